"""What the report shows, read from the warehouse: plain SQL on DuckDB and PostgreSQL.

Every query reads tables and analyst views by name (`emails__*`, `email_daily_activity`,
`email_sequence_performance`, `email_threads`), dlt's `_dlt_loads`, and the run history
`sync_runs` when it exists. Nothing here calls Close.
"""

import string
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from dlt.destinations.exceptions import DatabaseUndefinedRelation, DestinationUndefinedEntity

# The loaded tables whose rows are counted per load (each row carries `_dlt_load_id`)
TABLES = (
    "emails",
    "emails__recipients",
    "emails__attachments",
    "emails__opens",
    "emails__send_attempts",
    "emails__message_ids",
)
RUN_COLUMNS = (
    "started_at", "finished_at", "command", "organization_id", "status", "error",
    "emails_new", "emails_updated", "emails_deleted", "rows_loaded", "api_requests",
)  # fmt: skip
LAST_RUNS = 10
DAYS = 60  # daily volume: the last DAYS days that have email
TOP_THREADS = 15


@dataclass
class ReportData:
    """Everything on the page, as read at `generated_at`."""

    dataset: str
    generated_at: datetime
    last_load_at: datetime | None = None
    runs: list[dict[str, Any]] | None = None  # None: no `sync_runs` table yet
    rows_over_time: dict[str, list[tuple[datetime, int]]] = field(default_factory=dict)
    daily_volume: list[tuple[date, int, int]] = field(default_factory=list)  # day, sent, received
    sequences: list[tuple[str, int, int, float | None]] = field(default_factory=list)
    waiting_threads: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last_success_at(self) -> datetime | None:
        """When the last successful run finished (the run history's, else dlt's last load)."""
        finished = [r["finished_at"] for r in self.runs or [] if r.get("status") == "succeeded"]
        return max(finished) if finished else self.last_load_at


def read_report_data(client: Any) -> ReportData:
    """Reads the report's numbers through an open dlt sql client of the dataset."""
    data = ReportData(client.dataset_name, datetime.now(UTC))
    data.last_load_at = _one(client, "SELECT MAX(inserted_at) FROM {_dlt_loads} WHERE status = 0")
    data.runs = _runs(client)
    data.rows_over_time = _rows_over_time(client)
    data.daily_volume = [
        (day, int(sent), int(received))
        for day, sent, received in _rows(
            client,
            "SELECT day, SUM(sent), SUM(received) FROM {email_daily_activity}"
            " GROUP BY day ORDER BY day DESC LIMIT %s",
            DAYS,
        )
    ][::-1]
    data.sequences = [
        (name or sequence_id, int(sent), int(replied), None if rate is None else float(rate))
        for sequence_id, name, sent, replied, rate in _rows(
            client,
            "SELECT sequence_id, sequence_name, emails_sent, emails_replied, reply_rate"
            " FROM {email_sequence_performance} WHERE emails_sent > 0"
            " ORDER BY reply_rate DESC, emails_sent DESC, sequence_id",
        )
    ]
    data.waiting_threads = _waiting_threads(client)
    return data


def _runs(client: Any) -> list[dict[str, Any]] | None:
    """The last runs from `sync_runs`, newest first; None when the table does not exist."""
    try:
        with client.execute_query(
            "SELECT * FROM {t} ORDER BY started_at DESC LIMIT %s".format(
                t=client.make_qualified_table_name("sync_runs")
            ),
            LAST_RUNS,
        ) as cursor:
            names = list(cursor.columns_schema)  # dlt's cursors: DB-API and SQLAlchemy alike
            rows = cursor.fetchall()
    except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
        return None
    return [{k: v for k, v in zip(names, row, strict=True) if k in RUN_COLUMNS} for row in rows]


def _rows_over_time(client: Any) -> dict[str, list[tuple[datetime, int]]]:
    """Per table: rows stored now, cumulated over the loads that wrote them (by load time).

    A row replaced by a later load counts at that later load, so each series ends at the
    table's row count now.
    """
    series = {}
    for table in TABLES:
        rows = _rows(
            client,
            "SELECT l.inserted_at, COUNT(*) FROM {" + table + "} t JOIN {_dlt_loads} l"
            " ON l.load_id = t._dlt_load_id GROUP BY l.inserted_at ORDER BY l.inserted_at",
        )
        total, points = 0, []
        for inserted_at, count in rows:
            total += int(count)
            points.append((inserted_at, total))
        series[table] = points
    return series


def _waiting_threads(client: Any) -> list[dict[str, Any]]:
    """Threads we wrote in (scheduled mail aside) with no reply yet, the latest first."""
    names = ("thread_id", "lead_id", "message_count", "first_outgoing_at", "last_activity_at")
    rows = _rows(
        client,
        f"SELECT {', '.join(names)} FROM {{email_threads}}"
        " WHERE first_outgoing_at <= CURRENT_TIMESTAMP AND NOT replied"
        " ORDER BY first_outgoing_at DESC, thread_id LIMIT %s",
        TOP_THREADS,
    )
    return [dict(zip(names, row, strict=True)) for row in rows]


def _rows(client: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of `sql`, its `{name}` relations qualified; none when a relation is missing."""
    relations = {name: client.make_qualified_table_name(name) for name in _names(sql)}
    try:
        return [tuple(row) for row in client.execute_sql(sql.format(**relations), *params) or []]
    except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
        return []


def _one(client: Any, sql: str) -> Any:
    rows = _rows(client, sql)
    return rows[0][0] if rows else None


def _names(sql: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(sql) if name]
