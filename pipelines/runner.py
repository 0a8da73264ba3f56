"""Runs the Close source in a dlt pipeline: sync, backfill, status, and the run summary.

The order of a run matters for crash safety. dlt commits the pipeline state locally at the
end of extract and ships it inside the load package, so cursors reach the destination only
together with the data they cover. A run killed after extract leaves a pending package;
`run()` would then load it and return *without* extracting, so `sync` first finishes any
pending packages and then extracts fresh data, in the same invocation.
"""

import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigValueCannotBeCoercedException,
)
from dlt.common.runtime.collector import Collector, NullCollector
from dlt.destinations.exceptions import DatabaseUndefinedRelation, DestinationUndefinedEntity
from dlt.pipeline.state_sync import load_pipeline_state_from_destination

from pipelines.change_counts import EmailChangeCounter, warehouse_versions
from pipelines.collection import rare_collections
from pipelines.failures import destination_failure
from pipelines.loading import configure, loaded_rows, loader_file_format
from pipelines.postgres_copy import destination_for
from pipelines.preflight import DestinationSettingError
from pipelines.run_display import RunProgress
from sources.close import (
    RunStats,
    WalkRun,
    backfill_key,
    close_backfill,
    close_source,
    walk_cursor,
)
from sources.close.client import CloseApiError
from sources.close.options import CloseOptionError
from sources.close.settings import DEFAULT_EVENT_RETENTION_DAYS
from sources.close.timestamps import parse_timestamp
from warehouse import SqlWarehouse, missing_duckdb_file, refresh_views, view_names

logger = logging.getLogger(__name__)

TABLES = ["emails", *view_names()]

# Extract the source's resources one after the other (dlt's default interleaves them): the
# event-log scan then starts after the walk has finished, so emails inserted behind the walk
# while it ran are picked up in the same run instead of the next one.
dlt.config["sources.close.extract.next_item_mode"] = "fifo"
configure()

# Held around every write to the destination (load, view refresh). Uncontended for one
# organization; the pipelines of several organizations (pipelines/organizations.py) run in
# threads and take turns here, as DuckDB has one writer and views conflict when re-created
# at once.
DESTINATION_WRITES = threading.RLock()


def make_pipeline(pipeline_name: str, destination: str, dataset: str) -> dlt.Pipeline:
    """The dlt pipeline; DuckDB's file defaults to `<pipeline_name>.duckdb` in the cwd."""
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=destination_for(destination),
        dataset_name=dataset,
    )


def run_sync(
    pipeline: dlt.Pipeline,
    include_bodies: bool | None = None,
    reconcile: bool = False,
    warehouse: SqlWarehouse | None = None,
    source_options: dict[str, Any] | None = None,
    progress: RunProgress | None = None,
) -> dict[str, Any]:
    """The nightly job, in chunk loads until the walk and the change scan are done.

    Each chunk is extracted, normalized and loaded (with the ranges it completes) while the
    walk's workers fetch the next one. `warehouse` and `source_options` (e.g. `api_key`)
    are one organization's (pipelines/organizations.py). Returns the run summary.
    """
    stats = RunStats()
    options = {**_source_options(include_bodies), **(source_options or {})}
    if reconcile:
        options["reconcile"] = True
    lookups = warehouse or SqlWarehouse(pipeline)

    def source(walk: WalkRun) -> Any:
        return close_source(warehouse=lookups, stats=stats, run=walk, **options)

    progress = progress or RunProgress()
    progress.stats = stats
    counter, rows = _run_chunks(pipeline, source, progress, lookups)
    return _summary("sync", stats, counter, rows, lookups)


def run_backfill(
    pipeline: dlt.Pipeline,
    start: datetime,
    end: datetime,
    include_bodies: bool | None = None,
    warehouse: SqlWarehouse | None = None,
    source_options: dict[str, Any] | None = None,
    progress: RunProgress | None = None,
) -> dict[str, Any]:
    """Backfills `[start, end)` in chunk loads, each committed with its progress."""
    stats = RunStats()
    options = {**_source_options(include_bodies), **(source_options or {})}
    resumed = _backfill_saved_progress(pipeline, start, end)
    lookups = warehouse or SqlWarehouse(pipeline)

    def source(walk: WalkRun) -> Any:
        return close_backfill(start, end, warehouse=lookups, stats=stats, run=walk, **options)

    progress = progress or RunProgress()
    progress.stats = stats
    counter, rows = _run_chunks(pipeline, source, progress, lookups)
    summary = _summary("backfill", stats, counter, rows, lookups)
    summary["backfill.range"] = f"[{start.isoformat()}, {end.isoformat()})"
    resumed_done = (resumed or {}).get("done") or []
    summary["backfill.resumed"] = bool(resumed_done) and not (resumed or {}).get("finished")
    return summary


def _run_chunks(
    pipeline: dlt.Pipeline,
    make_source: Callable[[WalkRun], Any],
    progress: RunProgress,
    lookups: SqlWarehouse,
) -> tuple[EmailChangeCounter, Counter[str]]:
    """Loads `make_source(walk)` chunk after chunk until the walk says it is finished.

    The first source is made before anything else, so that its options are checked before
    a pending load is finished or a request is sent. Returns the counter of emails new,
    updated and deleted (against the warehouse before the run) and the rows loaded per table.
    """
    walk = WalkRun()
    progress.walk = CrashSwitch.walk = walk
    rows: Counter[str] = Counter()
    with rare_collections(), closing(walk):
        source = make_source(walk)
        _finish_pending(pipeline)
        # `lookups` sees this organization's emails only, where a dataset holds several
        walk.warehouse_empty = lookups.email_count() == 0
        counter = EmailChangeCounter(warehouse_versions(pipeline), walk.warehouse_empty)
        progress.counter = counter
        while True:
            for resource in source.resources.values():
                resource.add_map(counter.observe)
            rows.update(_run(pipeline, source))
            progress.chunks += 1
            if walk.finished:
                return counter, rows
            source = make_source(walk)


def status_report(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """Cursors as of the last successful load (read from the destination), rows per table."""
    if missing_duckdb_file(pipeline):
        return {"status": "no successful run yet", "pipeline": pipeline.pipeline_name}
    client = pipeline.destination_client()
    try:
        with client:
            state = load_pipeline_state_from_destination(pipeline.pipeline_name, client)  # type: ignore[arg-type]
    except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
        state = None  # nothing loaded into this dataset yet
    if not state:
        return {"status": "no successful run yet", "pipeline": pipeline.pipeline_name}
    source_state = state.get("sources", {}).get("close", {})
    cursor = walk_cursor(source_state)
    event_cursor = parse_timestamp(source_state.get("event_cursor"))
    now = datetime.now(UTC)
    report: dict[str, Any] = {
        "pipeline": pipeline.pipeline_name,
        "destination": pipeline.destination.destination_name,
        "dataset": pipeline.dataset_name,
        "last_successful_run": _last_load(pipeline),
        "cursor.date_created": cursor,
        "cursor.event_log": event_cursor.isoformat() if event_cursor else None,
    }
    if event_cursor:
        age = now - event_cursor
        report["event_log.cursor_age"] = str(age).split(".")[0]
        report["event_log.covers_gap"] = age < timedelta(days=DEFAULT_EVENT_RETENTION_DAYS)
    for key, progress in (source_state.get("backfills") or {}).items():
        ranges = len(progress.get("done") or [])
        report[f"backfill.{key}"] = (
            "finished" if progress.get("finished") else f"unfinished ({ranges} ranges loaded)"
        )
    report.update({f"rows.{name}": count for name, count in _row_counts(pipeline).items()})
    return report


def describe_failure(exc: BaseException) -> str | None:
    """One line for an expected failure (bad key, API or destination down), else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, CloseApiError | CloseOptionError | DestinationSettingError):
            return str(seen)
        if isinstance(seen, ConfigValueCannotBeCoercedException):
            kind = getattr(seen.hint, "__name__", seen.hint)
            value = "" if "key" in seen.field_name else f" ({seen.field_value!r})"
            return (
                f"setting {seen.field_name}{value} cannot be read as {kind}; fix it in"
                " .dlt/config.toml or the environment"
            )
        if isinstance(seen, ConfigFieldMissingException):
            if any("api_key" in field for field in seen.fields):
                return (
                    "no Close API key: set SOURCES__CLOSE__API_KEY or sources.close.api_key"
                    " in .dlt/secrets.toml"
                )
            return f"missing configuration: {', '.join(seen.fields)}"
        destination = destination_failure(seen)
        if destination:
            return destination
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "exception", None)
    return None


def _source_options(include_bodies: bool | None) -> dict[str, Any]:
    """Source arguments from the command line; what it leaves out comes from dlt config."""
    return {} if include_bodies is None else {"include_bodies": include_bodies}


def _run(pipeline: dlt.Pipeline, source: Any) -> dict[str, int]:
    """Extracts, normalizes and loads `source`, refreshes the views; rows loaded per table."""
    fmt = loader_file_format(pipeline.destination.destination_name)
    pipeline.collector = CrashSwitch.from_env()
    pipeline.run(source, loader_file_format=fmt).raise_on_failed_jobs()  # type: ignore[arg-type]
    _refresh_views(pipeline)
    return loaded_rows(pipeline)


class CrashSwitch(NullCollector):
    """Test hook: `CLOSE_SYNC_KILL_AT=<step>:<n>[:<run>[:<signal>]]` SIGKILLs this process.

    dlt reports progress to a collector: `<step>` is `extract`, `normalize` or `load`, and
    the process dies at the n-th progress update of that step (`0` = as the step starts) of
    the `<run>`-th pipeline run of this process (default 1; a backfill makes one run per
    window chunk; at normalize and load, the last run when the command makes fewer, as the
    number of chunks depends on timing). The crash-safety tests use it to kill the real CLI
    mid-extract, between extract and load, and mid-load; `<signal>` (`INT`, `TERM`; default
    `KILL`) sends another signal, once. Unset (always, outside those tests) it does nothing.
    """

    runs = 0
    walk: WalkRun | None = None  # the command's chunk loop: is this run its last?

    def __init__(self, step: str, updates: int, run: int, signum: int = signal.SIGKILL) -> None:
        self.kill_step, self.kill_after, self.kill_run = step, updates, run
        self.step, self.updates = "", 0
        self.signum, self.sent = signum, False

    @classmethod
    def from_env(cls) -> Collector:
        cls.runs += 1
        setting = os.environ.get("CLOSE_SYNC_KILL_AT")
        if not setting:
            return NullCollector()
        parts = setting.split(":")
        step, updates, run, name = (parts + ["0", "1", "KILL"][len(parts) - 1 :])[:4]
        return cls(step.lower(), int(updates), int(run), signal.Signals[f"SIG{name}"])

    def _start(self, step: str) -> None:
        self.step, self.updates = step.lower(), 0
        self._maybe_kill()

    def update(self, name: str, inc: int = 1, *args: Any, **kwargs: Any) -> None:
        self.updates += 1
        self._maybe_kill()

    def _maybe_kill(self) -> None:
        if (
            (CrashSwitch.runs == self.kill_run or self._last_of_fewer_runs())
            and self.step.startswith(self.kill_step)
            and self.updates >= self.kill_after
            and not self.sent
        ):
            self.sent = True  # a second SIGINT/SIGTERM would make dlt stop without draining
            os.kill(os.getpid(), self.signum)

    def _last_of_fewer_runs(self) -> bool:
        walk = CrashSwitch.walk
        last = walk is not None and walk.finished and self.step != "extract"
        return last and CrashSwitch.runs < self.kill_run


def _finish_pending(pipeline: dlt.Pipeline) -> None:
    """Loads packages a killed run left behind before anything new is extracted."""
    if pipeline.has_pending_data:
        logger.warning("finishing the load left pending by an interrupted run")
        pipeline.run()
        _refresh_views(pipeline)


def _refresh_views(pipeline: dlt.Pipeline) -> None:
    with DESTINATION_WRITES, pipeline.sql_client() as client:
        if client.has_dataset():
            refresh_views(client)


def _source_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    return pipeline.state.get("sources", {}).get("close", {})  # type: ignore[return-value]


def _backfill_saved_progress(
    pipeline: dlt.Pipeline, start: datetime, end: datetime
) -> dict[str, Any] | None:
    """The progress of an unfinished backfill of this range, as last committed."""
    return _source_state(pipeline).get("backfills", {}).get(backfill_key(start, end))


def _row_counts(pipeline: dlt.Pipeline, tables: list[str] | None = None) -> dict[str, int]:
    counts = {}
    try:
        with pipeline.sql_client() as client:
            if not client.has_dataset():
                return {}
            for table in tables or TABLES:
                name = client.make_qualified_table_name(table)
                try:
                    result = client.execute_sql(f"SELECT COUNT(*) FROM {name}")
                    counts[table] = result[0][0] if result else 0
                except DatabaseUndefinedRelation:  # not created yet
                    counts[table] = 0
    except Exception as exc:
        if describe_failure(exc):
            raise
        return {}
    return counts


def _last_load(pipeline: dlt.Pipeline) -> str | None:
    with pipeline.sql_client() as client:
        rows = client.execute_sql(
            f"SELECT MAX(inserted_at) FROM {client.make_qualified_table_name('_dlt_loads')}"
            " WHERE status = 0"
        )
    value = rows[0][0] if rows else None
    return value.isoformat() if value else None


def _summary(
    command: str,
    stats: RunStats,
    counter: EmailChangeCounter,
    row_counts: dict[str, int],
    lookups: SqlWarehouse,
) -> dict[str, Any]:
    """The run summary. `emails.new/updated/deleted` are exact (`change_counts.py`);
    `loaded_rows.*` uses the analysts' table names, as `status`'s `rows.*` does."""
    after = lookups.email_count()
    loaded_emails = row_counts.get("emails", 0)
    changes = counter.counts(after)
    summary: dict[str, Any] = {
        "command": command,
        "emails.loaded": loaded_emails - stats.deleted if loaded_emails else 0,
        "emails.new": changes["new"],
        "emails.updated": changes["updated"],
        "emails.deleted": changes["deleted"],
        "emails.total": after,
    }
    if stats.reconciled_because:
        summary["reconciled_because"] = stats.reconciled_because
    summary.update({f"loaded_rows.{_analyst_name(t)}": n for t, n in sorted(row_counts.items())})
    summary["api.requests"] = stats.requests.requests
    summary["api.retries"] = stats.requests.retries
    summary["api.throttled_429"] = stats.requests.throttled
    summary["api.rate_wait_s"] = round(stats.requests.rate_wait_s, 2)
    summary["windows"] = stats.windows
    return summary


def _analyst_name(table: str) -> str:
    """`emails__recipients` -> `email_recipients`: the view analysts query, as in `status`."""
    return table.replace("emails__", "email_", 1) if table.startswith("emails__") else table
