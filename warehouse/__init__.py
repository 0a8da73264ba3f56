"""The analyst layer over what the Close source loads, for any dlt SQL destination.

The source (`sources/close/`) only extracts and shapes rows; this package owns what the
warehouse adds on top: the contract views written once and rendered per engine with sqlglot
(`views.py`, `dialects.py`), keys, indexes and comments (`ddl.py`), their refresh after each
load (`refresh.py`), the lookups the source asks for (`lookups.py`) and the data dictionary
(`dictionary.py`).
"""

from .dialects import sql_dialect
from .lookups import SqlWarehouse, missing_duckdb_file
from .refresh import refresh_views
from .views import ANALYST_VIEWS, CHILD_VIEWS, EMAILS_DESCRIPTION, view_names

__all__ = [
    "ANALYST_VIEWS",
    "CHILD_VIEWS",
    "EMAILS_DESCRIPTION",
    "SqlWarehouse",
    "missing_duckdb_file",
    "refresh_views",
    "sql_dialect",
    "view_names",
]
