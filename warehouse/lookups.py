"""Lookups into the loaded `emails` table that the source asks for (its `Warehouse`).

Deletions reach emails indirectly (a deleted thread or lead, a backfill range that Close no
longer fills), so the source asks which stored ids match. The queries are portable SQL with
the dataset's qualified table name from dlt's sql client, on every SQL destination.
"""

import os
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation, DestinationUndefinedEntity

from .dialects import UTC_WITHOUT_ZONE

RANGE_FIELDS = ("activity_at", "date_created")


class SqlWarehouse:
    """The source's `Warehouse` over a dlt pipeline's destination and dataset."""

    def __init__(self, pipeline: dlt.Pipeline) -> None:
        self.pipeline = pipeline

    def ids_where(self, column: str, values: Collection[str]) -> set[str]:
        """Ids of stored emails whose `thread_id` or `lead_id` is one of `values`."""
        if not values or column not in ("thread_id", "lead_id"):
            return set()
        placeholders = ", ".join(["%s"] * len(values))
        rows = self._query(
            f"SELECT id FROM {{emails}} WHERE {column} IN ({placeholders})", *sorted(values)
        )
        return {row[0] for row in rows}

    def email_count(self) -> int:
        """How many emails are stored (0 before the first load)."""
        rows = self._query("SELECT COUNT(*) FROM {emails}")
        return int(rows[0][0]) if rows else 0

    def versions(
        self, field: str | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, datetime]:
        """id -> `date_updated` of every stored email, or of those with `field` in [start, end)."""
        if field is None:
            rows = self._query("SELECT id, date_updated FROM {emails}")
        else:
            rows = self._in_range("date_updated", field, start, end)
        return {row[0]: _aware(row[1]) for row in rows}

    def created_at(self, field: str, start: datetime, end: datetime) -> dict[str, datetime]:
        """id -> `date_created` of the stored emails with `field` in [start, end)."""
        return {row[0]: _aware(row[1]) for row in self._in_range("date_created", field, start, end)}

    def _in_range(
        self, value: str, field: str, start: datetime | None, end: datetime | None
    ) -> list[Any]:
        if field not in RANGE_FIELDS:
            raise ValueError(f"cannot select emails by {field}")
        sql = f"SELECT id, {value} FROM {{emails}} WHERE {field} >= %s AND {field} < %s"
        return self._query(sql, *self._timestamps(start, end))

    def _timestamps(self, *values: datetime | None) -> list[Any]:
        """Bounds as the engine compares them: UTC without zone where timestamps have none.

        MySQL/MariaDB store dlt's UTC timestamps as `DATETIME`; an aware bound would be
        converted through the session's time zone by the driver.
        """
        if self.pipeline.destination.capabilities().sqlglot_dialect not in UTC_WITHOUT_ZONE:
            return list(values)
        return [v.astimezone(UTC).replace(tzinfo=None) if v else v for v in values]

    def _query(self, sql: str, *params: Any) -> list[Any]:
        with self.pipeline.sql_client() as client:
            table = client.make_qualified_table_name("emails")
            try:
                return list(client.execute_sql(sql.format(emails=table), *params) or [])
            except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
                return []  # nothing loaded yet


def missing_duckdb_file(pipeline: dlt.Pipeline) -> str | None:
    """The path of `pipeline`'s DuckDB file when it does not exist yet, else None.

    Reading a DuckDB destination creates its file: callers that only read (status, the
    report, lookups before options are checked) ask this first.
    """
    if pipeline.destination.destination_name != "duckdb":
        return None
    database = getattr(pipeline.destination_client().config.credentials, "database", None)
    return None if os.path.exists(database or "") else str(database)


def _aware(value: datetime) -> datetime:
    """A stored timestamp as an aware datetime (engines without time zones hold UTC)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
