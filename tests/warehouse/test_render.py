"""Every view rendered for the engines that cannot be reached from here parses back in that
engine's dialect, and the rendering keeps each engine's substitutes (README, Destinations)."""

import pytest
import sqlglot
from sqlglot import exp

from sources.close.columns import CHILD_COLUMNS
from warehouse.dialects import NO_INTERVAL
from warehouse.views import ANALYST_VIEWS, view_names, view_statements

# destination -> sqlglot dialect (as dlt's capabilities name it; MotherDuck is DuckDB)
RENDERED_ONLY = {
    "bigquery": "bigquery",
    "snowflake": "snowflake",
    "redshift": "redshift",
    "motherduck": "duckdb",
    "mssql": "tsql",
}
ALL_TABLES = {"emails", *(f"emails__{key}" for key in CHILD_COLUMNS)}


@pytest.mark.parametrize("existing", [ALL_TABLES, set()], ids=["loaded", "before-first-load"])
@pytest.mark.parametrize("destination", sorted(RENDERED_ONLY))
def test_every_view_renders_and_parses_back(destination: str, existing: set[str]) -> None:
    dialect = RENDERED_ONLY[destination]
    statements = view_statements("close", existing, dialect)
    views = view_names()
    assert len(statements) == 2 * len(views)  # a drop and a create per view
    created = []
    for sql in statements:
        tree = sqlglot.parse_one(sql, read=dialect, error_level=sqlglot.ErrorLevel.RAISE)
        if isinstance(tree, exp.Create):
            created.append(tree.this.name)
            query = tree.expression
            columns = [select.alias_or_name for select in query.selects]
            assert columns and all(columns), sql
            assert {t.db for t in query.find_all(exp.Table) if t.db} <= {"close"}, sql
    assert created == views


@pytest.mark.parametrize("destination", sorted(RENDERED_ONLY))
def test_views_keep_their_contract_columns(destination: str) -> None:
    dialect = RENDERED_ONLY[destination]
    statements = view_statements("close", ALL_TABLES, dialect)
    for view, (_sql, _description, columns) in ANALYST_VIEWS.items():
        (create,) = [s for s in statements if s.startswith("CREATE") and f"{view}" in s.split()[2]]
        tree = sqlglot.parse_one(create, read=dialect)
        assert [s.alias_or_name for s in tree.expression.selects] == list(columns), view


@pytest.mark.parametrize("dialect", ["snowflake", "tsql", "mysql", "duckdb", "postgres"])
def test_time_to_first_reply_is_an_interval_or_seconds(dialect: str) -> None:
    (create,) = [
        s for s in view_statements("close", ALL_TABLES, dialect) if "time_to_first_reply" in s
    ]
    tree = sqlglot.parse_one(create, read=dialect)
    (column,) = [s for s in tree.expression.selects if s.alias == "time_to_first_reply"]
    if dialect in NO_INTERVAL:
        assert column.find(exp.TimestampDiff, exp.DateDiff), column.sql(dialect)
    else:
        assert isinstance(column.this, exp.Sub), column.sql(dialect)
