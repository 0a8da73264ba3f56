"""The `destination` fixture of the integration suite: DuckDB, PostgreSQL and MariaDB.

A module that imports `every_destination` runs its tests on all three (conftest's own
`destination` fixture, used elsewhere, covers DuckDB and PostgreSQL).
"""

import pytest

from tests.conftest import EVERY_DESTINATION


@pytest.fixture(params=EVERY_DESTINATION, name="destination")
def every_destination(request: pytest.FixtureRequest) -> str:
    """The destination name: `duckdb`, `postgres` or `sqlalchemy` (MariaDB)."""
    return request.param  # type: ignore[no-any-return]
