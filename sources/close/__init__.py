"""Close CRM email activities, kept in step incrementally with dlt.

`close_source` is the nightly sync. Its `emails` resource walks `GET /activity/email/` in
ascending half-open `date_created` windows (never null, always in the past, unlike
`activity_at`), with dlt's incremental keeping the cursor. Its `email_changes` resource then
reads Close's event log since its own cursor (kept in the source state) and re-fetches
created and updated emails by id, and turns deleted ones (also through deleted threads and
leads) into deletion markers. When the event log no longer reaches back to that cursor, it
reconciles the whole history by comparing ids and `date_updated` instead.

`close_backfill` makes the warehouse equal Close for an `activity_at` range, window by
window, resumably, without touching the nightly cursors.

All three resources write the `emails` table with identical hints: merge (delete-insert)
on `id`, the newest `date_updated` winning inside one load, child lists as nested tables
replaced with their parent, and a `_deleted` hard-delete marker.
"""

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import dlt
from dlt.sources import DltResource, TDataItems

from .changes import (
    RunStats,
    Warehouse,
    event_log_gap,
    event_log_reaches,
    first_email_start,
    reconcile_history,
    refresh,
    scan_events,
)
from .client import CloseClient
from .rows import NON_BODY_FIELDS, resource_hints, shape
from .settings import (
    CONNECT_TIMEOUT_S,
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_EVENT_RETENTION_DAYS,
    DEFAULT_START_DATE,
    DEFAULT_WINDOW_DAYS,
    EMAIL_ACTIONS,
    EMAIL_OBJECT_TYPE,
    EVENT_RESCAN,
    LEAD_OBJECT_TYPE,
    MAX_ATTEMPTS,
    READ_TIMEOUT_S,
    THREAD_OBJECT_TYPE,
    WALK_SAFETY_LAG,
)
from .timestamps import format_timestamp, parse_timestamp
from .walk import make_windows, walk_windows

__all__ = [
    "close_source",
    "close_backfill",
    "backfill_key",
    "backfill_progress",
    "RunStats",
    "Warehouse",
]

logger = logging.getLogger(__name__)


@dlt.source(name="close")
def close_source(
    api_key: str = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
    start_date: str = DEFAULT_START_DATE,
    include_bodies: bool = True,
    window_days: float = DEFAULT_WINDOW_DAYS,
    concurrency: int = DEFAULT_CONCURRENCY,
    event_retention_days: float = DEFAULT_EVENT_RETENTION_DAYS,
    reconcile: bool = False,
    max_attempts: int = MAX_ATTEMPTS,
    request_timeout: float = READ_TIMEOUT_S,
    warehouse: Any | None = None,
    stats: Any | None = None,
) -> Sequence[DltResource]:
    """The nightly sync of Close email activities.

    Args:
        api_key: Close API key (Basic-auth user, empty password).
        base_url: Close API root.
        start_date: ISO date; emails created before it are not loaded.
        include_bodies: False leaves the body columns NULL and asks Close not to send them.
        window_days: length of one `date_created` window of the walk.
        concurrency: windows fetched at once, all under one rate limiter.
        event_retention_days: how long Close keeps events; an event cursor older than this
            triggers a reconciliation even if the log still seems to reach it.
        reconcile: reconcile the whole history by id now, whatever the event log says.
        max_attempts: tries per request on 5xx answers, dropped connections and timeouts.
        request_timeout: seconds to wait for an answer before retrying.
        warehouse: lookups into the destination (`Warehouse`); needed for thread and lead
            deletions and for reconciliation.
        stats: a `RunStats` to fill for the run summary.

    Returns:
        `emails` (the walk) and `email_changes` (event log, reconciliation), both writing
        the `emails` table and its child tables.
    """
    client, run_stats = _connect(api_key, base_url, request_timeout, max_attempts, stats)
    fields = None if include_bodies else NON_BODY_FIELDS
    window = timedelta(days=window_days)
    run: dict[str, Any] = {}  # hand-over from the walk to the change scan within one run
    history_start = parse_timestamp(start_date)

    def walk(
        date_created: dlt.sources.incremental[datetime] = dlt.sources.incremental(  # noqa: B008
            "date_created", initial_value=history_start, range_start="closed"
        ),
    ) -> Iterator[TDataItems]:
        """Yields every email created since the cursor, in `date_created` windows.

        Incremental on `date_created` (dlt state): each run walks `[cursor, now - 2 min)`;
        rows exactly at the cursor that were loaded before are dropped by dlt's boundary
        de-duplication. On the first run it also starts the event-log cursor at Close's
        current time, so changes made while the walk runs are picked up by `email_changes`.
        """
        started = client.server_now()
        state = dlt.current.source_state()
        if "event_cursor" not in state:
            state["event_cursor"] = format_timestamp(started)
            run["fresh_event_cursor"] = True
        start = date_created.start_value
        if date_created.last_value is None or start == date_created.initial_value:
            start = first_email_start(client, start)
        windows = make_windows("date_created", start, started - WALK_SAFETY_LAG, window)
        run_stats.windows += len(windows)
        for page in walk_windows(client, windows, concurrency, fields):
            yield from shape(page, include_bodies)

    def changes() -> Iterator[TDataItems]:
        """Yields emails created, changed or deleted since the event cursor (source state).

        Reads the event log once per action (Close accepts `object_type` only with
        `action`), rescanning five minutes before the cursor as Close recommends, plus
        thread and lead deletions; re-fetches the affected ids with `id__in` and yields a
        deletion marker for each id Close no longer has. If the log no longer reaches the
        cursor, reconciles the whole history first. No incremental here: a re-fetched email
        is usually far behind the walk's cursor and must not be filtered out.
        """
        state = dlt.current.source_state()
        scan_started = client.server_now()
        cursor = parse_timestamp(state.get("event_cursor")) or scan_started
        since = cursor - EVENT_RESCAN
        reason = None
        if reconcile:
            reason = "reconciliation was requested"
        elif not run.get("fresh_event_cursor"):
            reason = event_log_gap(client, state, cursor, scan_started, event_retention_days)
        if reason:
            logger.warning("%s: reconciling the whole history by id", reason)
            run_stats.reconciled_because = reason
            yield from reconcile_history(client, warehouse, run_stats, fields, include_bodies,
                                  history_start, scan_started, window, concurrency)  # fmt: skip
            since = scan_started - EVENT_RESCAN
        ids = {
            event["object_id"]
            for action in EMAIL_ACTIONS
            for event in scan_events(client, since, object_type=EMAIL_OBJECT_TYPE, action=action)
        }
        for object_type, column in (
            (THREAD_OBJECT_TYPE, "thread_id"),
            (LEAD_OBJECT_TYPE, "lead_id"),
        ):
            gone = {
                e["object_id"]
                for e in scan_events(client, since, object_type=object_type, action="deleted")
            }
            if gone and warehouse is not None:
                ids |= warehouse.ids_where(column, gone)
        yield from refresh(client, ids, fields, include_bodies, run_stats)
        state["event_cursor"] = format_timestamp(scan_started)
        state["event_log_reached_cursor"] = event_log_reaches(client, scan_started)

    return (
        _emails_resource(walk, "emails"),
        _emails_resource(changes, "email_changes"),
    )


@dlt.source(name="close")
def close_backfill(
    start: datetime,
    end: datetime,
    api_key: str = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
    include_bodies: bool = True,
    window_days: float = DEFAULT_WINDOW_DAYS,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_attempts: int = MAX_ATTEMPTS,
    request_timeout: float = READ_TIMEOUT_S,
    warehouse: Any | None = None,
    stats: Any | None = None,
) -> DltResource:
    """Makes the warehouse equal Close for emails with `activity_at` in `[start, end)`.

    One run of this source handles the next `concurrency` windows after the range's saved
    progress (`backfills` in the source state) and records how far it got; the caller runs
    it until the progress says `finished`. A crash therefore resumes from the last loaded
    window. The nightly cursors are not touched.

    Returns:
        `email_backfill`, writing the `emails` table and its child tables.
    """
    client, run_stats = _connect(api_key, base_url, request_timeout, max_attempts, stats)
    fields = None if include_bodies else NON_BODY_FIELDS

    def backfill() -> Iterator[TDataItems]:
        """Yields every email Close has in the next windows, and markers for those it lacks.

        Walks `activity_at` windows (anchored on `date_created` like the nightly walk); ids
        the warehouse holds in those windows but Close did not list are checked by id and
        removed if Close no longer has them.
        """
        progress = backfill_progress(dlt.current.source_state(), start, end)
        done_until = parse_timestamp(progress["done_until"])
        windows = make_windows("activity_at", done_until, end, timedelta(days=window_days))
        chunk = windows[: max(1, concurrency)]
        seen: set[str] = set()
        for page in walk_windows(client, chunk, concurrency, fields):
            seen.update(e["id"] for e in page)
            yield from shape(page, include_bodies)
        chunk_end = chunk[-1].end if chunk else end
        if warehouse is not None:
            stored = warehouse.versions("activity_at", done_until, chunk_end)
            yield from refresh(client, stored.keys() - seen, fields, include_bodies, run_stats)
        run_stats.windows += len(chunk)
        progress["done_until"] = format_timestamp(chunk_end)
        progress["finished"] = chunk_end >= end

    return _emails_resource(backfill, "email_backfill")


def backfill_key(start: datetime, end: datetime) -> str:
    return f"{format_timestamp(start)}/{format_timestamp(end)}"


def backfill_progress(state: dict[str, Any], start: datetime, end: datetime) -> dict[str, Any]:
    """The saved progress of the backfill of `[start, end)`; a finished one starts over."""
    backfills = state.setdefault("backfills", {})
    progress = backfills.get(backfill_key(start, end))
    if progress is None or progress.get("finished"):
        progress = {"done_until": format_timestamp(start), "finished": False}
        backfills[backfill_key(start, end)] = progress
    return progress  # type: ignore[no-any-return]


def _connect(
    api_key: str, base_url: str, request_timeout: float, max_attempts: int, stats: Any | None
) -> tuple[CloseClient, RunStats]:
    """The API client of one run, counting into the run's stats."""
    run_stats: RunStats = stats or RunStats()
    timeout = (CONNECT_TIMEOUT_S, request_timeout)
    client = CloseClient(api_key, base_url, timeout, max_attempts, stats=run_stats.requests)
    return client, run_stats


def _emails_resource(generator: Any, name: str) -> DltResource:
    """Wraps a generator as a resource writing `emails` with the one set of shared hints.

    Several resources write the same table; dlt keeps the hints of whichever it saw first,
    so they must be identical everywhere (or a deletion marker would lose `hard_delete`).
    """
    return dlt.resource(
        generator,
        name=name,
        **resource_hints(),
    )()
