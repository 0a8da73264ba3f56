"""Run history: the `sync_runs` table, one row per `sync` or `backfill`, failed runs included.

The row is written by a companion dlt pipeline (`<pipeline>__runs`, schema `sync_runs`) into
the same destination and dataset, not by the sync's own pipeline: a failed run may leave a
pending load package behind, and the sync's pipeline would load that first (and ship its
cursors) when asked to load anything. dlt still creates the table with its types on every
destination (timestamps with time zone, bigints), which hand-written DDL would have to redo
per engine.
"""

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation, DestinationUndefinedEntity

logger = logging.getLogger(__name__)

TABLE = "sync_runs"
BUSY_ATTEMPTS = 5  # tries while another process writes the DuckDB file
BUSY_PAUSE_S = 1.0
SCHEMA = "sync_runs"

COLUMNS: dict[str, dict[str, Any]] = {
    "run_id": {"data_type": "text", "nullable": False, "primary_key": True},
    "pipeline_name": {"data_type": "text", "nullable": False},
    "organization_id": {"data_type": "text"},
    "command": {"data_type": "text", "nullable": False},
    "started_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
    "finished_at": {"data_type": "timestamp", "timezone": True},
    "status": {"data_type": "text", "nullable": False},
    "error": {"data_type": "text"},
    "emails_new": {"data_type": "bigint"},
    "emails_updated": {"data_type": "bigint"},
    "emails_deleted": {"data_type": "bigint"},
    "rows_loaded": {"data_type": "bigint"},
    "api_requests": {"data_type": "bigint"},
    "api_throttled": {"data_type": "bigint"},
    "cursor_before": {"data_type": "text"},
    "cursor_after": {"data_type": "text"},
    # extras (the contract welcomes them)
    "dataset_name": {"data_type": "text"},
    "host": {"data_type": "text"},
    "pid": {"data_type": "bigint"},
}


def new_run_id(now: datetime | None = None) -> str:
    """A unique, sortable run id: UTC start second plus 6 random hex digits."""
    moment = now or datetime.now(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass
class RunRecord:
    """One `sync_runs` row; the command fills it as the run goes."""

    pipeline_name: str
    command: str
    dataset_name: str
    host: str
    pid: int
    run_id: str = field(default_factory=new_run_id)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    organization_id: str | None = None
    finished_at: datetime | None = None
    status: str = "failed"
    error: str | None = None
    emails_new: int | None = None
    emails_updated: int | None = None
    emails_deleted: int | None = None
    rows_loaded: int | None = None
    api_requests: int | None = None
    api_throttled: int | None = None
    cursor_before: str | None = None
    cursor_after: str | None = None

    def finish(self, error: str | None = None) -> None:
        """Marks the run finished now: `succeeded` without an error, else `failed`."""
        self.finished_at = datetime.now(UTC)
        self.status = "failed" if error else "succeeded"
        self.error = error

    def take_summary(self, summary: dict[str, Any]) -> None:
        """Copies the counts of a run summary (`emails.new`, `api.requests`, …)."""
        self.emails_new = summary.get("emails.new")
        self.emails_updated = summary.get("emails.updated")
        self.emails_deleted = summary.get("emails.deleted")
        self.rows_loaded = sum(v for k, v in summary.items() if k.startswith("loaded_rows."))
        self.api_requests = summary.get("api.requests")
        self.api_throttled = summary.get("api.throttled_429")


def record_run(
    pipeline: dlt.Pipeline, record: RunRecord, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Appends `record` to `sync_runs`; False (logged, never raised) if the destination
    cannot take it, so that a run's own error stays the one line it prints.

    A DuckDB file takes one writing process at a time: a run refused by the lock may find
    the holder loading, so it tries again a few times before it gives up.
    """
    for attempt in range(1, BUSY_ATTEMPTS + 1):
        try:
            runs = _runs_pipeline(pipeline)
            resource = dlt.resource(
                [asdict(record)], name=TABLE, write_disposition="append", columns=COLUMNS
            )
            runs.run(resource, schema=dlt.Schema(SCHEMA)).raise_on_failed_jobs()
            return True
        except Exception as exc:  # the destination is unreachable: nothing else to do
            busy = "conflicting lock" in str(exc).lower() and attempt < BUSY_ATTEMPTS
            logger.debug("run %s not recorded in %s: %s", record.run_id, TABLE, exc)
            if not busy:
                return False
            sleep(BUSY_PAUSE_S)
    return False


def last_runs(pipeline: dlt.Pipeline, limit: int = 5) -> list[dict[str, Any]]:
    """The latest `limit` rows of `sync_runs` of this pipeline, newest first ([] if none)."""
    return _select(
        pipeline,
        "SELECT * FROM {table} WHERE pipeline_name = %s ORDER BY started_at DESC LIMIT "
        + str(limit),
        pipeline.pipeline_name,
    )


def last_success(pipeline: dlt.Pipeline, command: str = "sync") -> dict[str, Any] | None:
    """The latest succeeded run of `command` of this pipeline, or None."""
    rows = _select(
        pipeline,
        "SELECT * FROM {table} WHERE pipeline_name = %s AND command = %s"
        " AND status = 'succeeded' ORDER BY finished_at DESC LIMIT 1",
        pipeline.pipeline_name,
        command,
    )
    return rows[0] if rows else None


def _select(pipeline: dlt.Pipeline, sql: str, *params: Any) -> list[dict[str, Any]]:
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return []
        table = client.make_qualified_table_name(TABLE)
        try:
            with client.execute_query(sql.format(table=table), *params) as cursor:
                names = list(cursor.columns_schema)  # dlt's cursors: DB-API and SQLAlchemy alike
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
            return []  # no run recorded yet


def _runs_pipeline(pipeline: dlt.Pipeline) -> dlt.Pipeline:
    """The companion pipeline: same destination (same credentials) and dataset."""
    credentials = pipeline.destination_client().config.credentials
    destination = type(pipeline.destination)(credentials=credentials)  # type: ignore[call-arg]
    return dlt.pipeline(
        pipeline_name=f"{pipeline.pipeline_name}__runs",
        pipelines_dir=pipeline.pipelines_dir,
        destination=destination,
        dataset_name=pipeline.dataset_name,
    )


def history_status(pipeline: dlt.Pipeline, limit: int = 5) -> dict[str, Any]:
    """For `status`: load packages waiting to be loaded and the last runs, one line each."""
    pending = [*pipeline.list_extracted_load_packages(), *pipeline.list_normalized_load_packages()]
    report: dict[str, Any] = {
        "pending_loads": len(pending),
    }
    if pending:
        report["pending_loads.ids"] = ", ".join(pending)
        report["pending_loads.note"] = "the next sync loads them first"
    succeeded = last_success(pipeline)
    if succeeded is not None:  # dlt's `_dlt_loads` also lists the run-history loads
        report["last_successful_run"] = succeeded["finished_at"].astimezone(UTC).isoformat()
    runs = last_runs(pipeline, limit)
    report["last_runs"] = {str(n): describe_run(row) for n, row in enumerate(runs, 1)} or None
    return report


def describe_run(row: dict[str, Any]) -> str:
    """One line of a `sync_runs` row: id, command, status, when, counts or error."""
    finished = row.get("finished_at")
    when = finished.astimezone(UTC).isoformat(timespec="seconds") if finished else "unfinished"
    text = f"{row['run_id']} {row['command']} {row['status']} {when}"
    if row.get("status") == "succeeded":
        text += (
            f" new={row.get('emails_new')} updated={row.get('emails_updated')}"
            f" deleted={row.get('emails_deleted')} requests={row.get('api_requests')}"
        )
    elif row.get("error"):
        text += f": {row['error']}"
    return text
