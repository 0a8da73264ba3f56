"""How the views' one SQL text becomes each engine's SQL: sqlglot plus three rewrites.

The views are written in PostgreSQL's dialect (`views.py`) and transpiled by sqlglot. What
sqlglot cannot know is the contract's meaning, so three constructs are rewritten here:

- `ELAPSED(a, b)`, the time from `a` to `b`: an interval where the engine has one, else
  seconds as a double, to the microsecond (`TIMESTAMPDIFF`/`DATEDIFF_BIG`), the README's
  documented substitute;
- `AT TIME ZONE 'UTC'` on MySQL/MariaDB, which stores timestamps as UTC `DATETIME`s already
  (sqlglot would drop it with a warning);
- the typed, empty stand-in of a table not created yet: a `CAST(NULL AS <type>)` per column,
  with the type the engine gives the loaded column.
"""

from typing import Any

import sqlglot
from sqlglot import exp

# Engines without an interval type: `time_to_first_reply` is seconds (a double) there.
NO_INTERVAL = {"mysql", "tsql", "snowflake", "sqlite", "clickhouse"}
# Engines whose timestamps have no time zone and hold UTC (dlt writes UTC into them).
UTC_WITHOUT_ZONE = {"mysql", "sqlite"}

# dlt data type -> SQL type of a stand-in column (PostgreSQL spelling, sqlglot renders it)
STAND_IN_TYPES = {
    "text": "TEXT",
    "bigint": "BIGINT",
    "bool": "BOOLEAN",
    "json": "JSON",
    "timestamp": "TIMESTAMPTZ",
    "double": "DOUBLE PRECISION",
    "date": "DATE",
}
# where dlt creates json columns differently (MariaDB's JSON is text and cannot be CAST to)
STAND_IN_OVERRIDES = {"postgres": {"json": "JSONB"}, "mysql": {"json": "TEXT"}}


def sql_dialect(sql_client: Any) -> str:
    """The sqlglot dialect of an open dlt sql client (dlt maps sqlalchemy backends too)."""
    return sql_client.capabilities.sqlglot_dialect or "duckdb"


def render(sql: str, dialect: str, tables: dict[str, exp.Expression]) -> exp.Expression:
    """`sql` (PostgreSQL dialect) for `dialect`, its bare table names replaced by `tables`."""
    tree = sqlglot.parse_one(sql, read="postgres")
    return tree.transform(lambda node: _rewrite(node, dialect, tables))


def _rewrite(node: exp.Expression, dialect: str, tables: dict[str, exp.Expression]) -> Any:
    if isinstance(node, exp.Table) and not node.db and node.name in tables:
        relation = tables[node.name].copy()
        alias = node.args.get("alias")
        if isinstance(relation, exp.Subquery):
            return relation.as_(alias.name if alias else node.name)
        if alias:
            relation.set("alias", alias)
        return relation
    if isinstance(node, exp.Anonymous) and node.name.upper() == "ELAPSED":
        start, end = node.expressions
        return elapsed(start, end, dialect)
    if isinstance(node, exp.AtTimeZone) and dialect in UTC_WITHOUT_ZONE:
        return node.this
    return node


def elapsed(start: exp.Expression, end: exp.Expression, dialect: str) -> exp.Expression:
    """`end - start` as an interval, or in seconds where the engine has no interval.

    Both sides are shifted to UTC wall-clock time first: DuckDB subtracts two TIMESTAMPTZ
    in the session's time zone (calendar days), so a DST change in between would add or
    drop an hour.
    """
    if dialect in NO_INTERVAL:  # seconds, to the microsecond as the timestamps are
        micros = exp.TimestampDiff(this=end, expression=start, unit=exp.var("MICROSECOND"))
        return exp.Div(
            this=exp.cast(micros, exp.DataType.Type.DOUBLE), expression=exp.Literal.number(1e6)
        )
    utc = exp.Literal.string("UTC")
    return exp.Sub(
        this=exp.paren(exp.AtTimeZone(this=end, zone=utc)),
        expression=exp.paren(exp.AtTimeZone(this=start, zone=utc)),
    )


def empty_relation(columns: dict[str, str], dialect: str) -> exp.Subquery:
    """A typed, empty stand-in for a table that does not exist yet (column -> dlt type)."""
    overrides = STAND_IN_OVERRIDES.get(dialect, {})
    selects = [
        exp.alias_(
            exp.cast(exp.null(), overrides.get(t, STAND_IN_TYPES[t]), dialect="postgres"),
            name,
            quoted=True,
        )
        for name, t in columns.items()
    ]
    return exp.select(*selects).where("1 = 0").subquery()
