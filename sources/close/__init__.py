"""Close CRM email activities, kept in step incrementally with dlt.

`close_source` is the nightly sync. Its `emails` resource walks `GET /activity/email/` over
the `date_created` ranges not loaded yet (never null, always in the past, unlike
`activity_at`): the whole history on the first run, `[cursor, now - 2 min)` later. Workers
share the ranges and split busy ones (`walk.py`); a first sync loads in chunks, each
committed with the exact set of ranges it completes (`progress.py`), while the next chunk
is fetched. Its `email_changes` resource then reads Close's event log since its own cursor
(kept in the source state) and re-fetches created and updated emails by id, and turns
deleted ones (also through deleted threads and leads) into deletion markers. When the event
log no longer reaches back to that cursor, it reconciles the whole history by comparing ids
and `date_updated` instead.

`close_backfill` makes the warehouse equal Close for an `activity_at` range, chunk by chunk,
resumably, without touching the nightly cursors.

All three resources write the `emails` table with identical hints: merge (delete-insert)
on `id`, the newest `date_updated` winning inside one load, child lists as nested tables
replaced with their parent, and a `_deleted` hard-delete marker.

A caller that loads in chunks (`pipelines/runner.py`) passes one `WalkRun` to successive
instances of the source, so that the walk's workers, its rate limiter and its progress
carry over from one chunk's load to the next; `WalkRun.finished` says when to stop.
"""

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dlt
from dlt.sources import DltResource, TDataItems

from .changes import (
    EventScan,
    RunStats,
    Warehouse,
    event_log_gap,
    first_email_start,
    reconcile_history,
    refresh,
)
from .client import CloseClient
from .options import check_options
from .prefetch import Batch, Prefetch
from .progress import Interval, from_state, gaps, loaded_until, merge, to_state
from .rows import NON_BODY_FIELDS, finish, resource_hints
from .settings import (
    BATCH_EMAILS,
    BUFFER_PAGES,
    CONNECT_TIMEOUT_S,
    DEFAULT_BASE_URL,
    DEFAULT_CHUNK_EMAILS,
    DEFAULT_CONCURRENCY,
    DEFAULT_EVENT_RETENTION_DAYS,
    DEFAULT_START_DATE,
    EVENT_RESCAN,
    MAX_ATTEMPTS,
    MAX_CHUNK_FACTOR,
    PAGE_LIMIT,
    PREFETCH_BATCHES,
    READ_TIMEOUT_S,
    WALK_SAFETY_LAG,
)
from .timestamps import format_timestamp, parse_timestamp
from .walk import Walk

__all__ = [
    "close_source",
    "close_backfill",
    "backfill_key",
    "backfill_progress",
    "walk_cursor",
    "RunStats",
    "Warehouse",
    "WalkRun",
]

logger = logging.getLogger(__name__)


@dataclass
class WalkRun:
    """What one command's successive chunk loads share: client, walk, progress, hand-overs."""

    client: CloseClient | None = None
    walk: Walk | None = None
    prefetch: Prefetch | None = None  # shapes the walk's pages ahead
    done: list[Interval] = field(default_factory=list)  # loaded before this chunk
    spans: dict[int, Interval] = field(default_factory=dict)  # span id -> read part
    seen: set[str] = field(default_factory=set)  # backfill: ids Close listed in this run
    fresh_event_cursor: bool = False
    finished: bool = False
    # set by a caller that saw no email of the organization in the warehouse before the
    # command: then the walk's emails (each listed once) have no stored rows to replace
    warehouse_empty: bool = False

    def take(self, chunk_emails: int) -> Iterator[Batch]:
        """The next shaped batches of the walk, at least `chunk_emails` emails, noting their
        progress.

        The chunk ends where loading it costs least: once it holds `chunk_emails`, as soon
        as the walk is waiting on Close (it keeps fetching and shaping while this chunk
        loads); while it is waiting on us instead (full buffers, e.g. no rate limit), it
        grows up to `MAX_CHUNK_FACTOR` times, saving loads. Once the walk has fetched its
        last page, a chunk takes the rest when that is less than a chunk (it is in memory
        already, and would make a small load of its own): the change scan then joins this
        load instead of costing one more.
        """
        assert self.prefetch is not None
        taken = 0
        for batch in self.prefetch.batches():
            self.spans.update(batch.done)
            taken += batch.emails
            yield batch
            if not chunk_emails or taken < chunk_emails:
                continue
            if self.prefetch.walk.fetched() and self.prefetch.most_left() < chunk_emails:
                continue
            if not self.prefetch.backlogged() or taken >= MAX_CHUNK_FACTOR * chunk_emails:
                break

    def windows(self) -> int:
        """The walk's spans so far: one per worker to begin with, plus one per split."""
        return self.walk.spans.initial + self.walk.spans.splits if self.walk else 0

    @property
    def walked(self) -> bool:
        """Whether every page of the walk has been handed to a load."""
        return self.prefetch is not None and self.prefetch.finished

    def start(self, walk: Walk, include_bodies: bool, chunk_emails: int) -> None:
        """Starts the walk, its pages shaped ahead into about one chunk's worth of batches."""
        self.walk = walk
        batch = min(BATCH_EMAILS, chunk_emails) if chunk_emails else BATCH_EMAILS
        stored = not self.warehouse_empty
        self.prefetch = Prefetch(walk, include_bodies, _depth(chunk_emails), batch, stored)

    def loaded(self) -> list[Interval]:
        """What is loaded once this chunk is: the earlier ranges and the spans' read parts."""
        return merge([*self.done, *self.spans.values()])

    def close(self) -> None:
        """Ends the command: stops the walk's workers, also those asleep in the limiter."""
        if self.client is not None:
            self.client.stop.set()
        if self.prefetch is not None:  # also stops the walk (`start` makes both)
            self.prefetch.close()


@dlt.source(name="close")
def close_source(
    api_key: str = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
    start_date: str = DEFAULT_START_DATE,
    include_bodies: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
    chunk_emails: int = DEFAULT_CHUNK_EMAILS,
    event_retention_days: float = DEFAULT_EVENT_RETENTION_DAYS,
    reconcile: bool = False,
    max_attempts: int = MAX_ATTEMPTS,
    request_timeout: float = READ_TIMEOUT_S,
    warehouse: Any | None = None,
    stats: Any | None = None,
    run: WalkRun | None = None,
    window_days: float | None = None,
) -> Sequence[DltResource]:
    """The nightly sync of Close email activities.

    Args:
        api_key: Close API key (Basic-auth user, empty password).
        base_url: Close API root.
        start_date: ISO date; emails created before it are not loaded.
        include_bodies: False leaves the body columns NULL and asks Close not to send them.
        concurrency: pages fetched at once, all under one rate limiter.
        chunk_emails: with a `run` shared by successive loads, emails per load (0: all).
        event_retention_days: how long Close keeps events; an event cursor older than this
            triggers a reconciliation even if the log still seems to reach it.
        reconcile: reconcile the whole history by id now, whatever the event log says.
        max_attempts: tries per request on 5xx answers, dropped connections and timeouts.
        request_timeout: seconds to wait for an answer before retrying.
        warehouse: lookups into the destination (`Warehouse`); needed for thread and lead
            deletions and for reconciliation.
        stats: a `RunStats` to fill for the run summary.
        run: shared by the chunk loads of one command; without it the source loads all.
        window_days: no longer used (checked, so that an old setting of 0 fails clearly).

    Returns:
        `emails` (the walk) and `email_changes` (event log, reconciliation), both writing
        the `emails` table and its child tables.
    """
    check_options(concurrency, chunk_emails, max_attempts, request_timeout, start_date,
                  event_retention_days, window_days)  # fmt: skip
    chunked = run is not None
    run = run or WalkRun()
    client, run_stats = _connect(api_key, base_url, request_timeout, max_attempts, stats, run)
    fields, history_start = _walk_settings(include_bodies, start_date)

    def walk() -> Iterator[TDataItems]:
        """Yields every email created in the ranges not loaded yet, a chunk at a time.

        Incremental on `date_created` through the source state's `walk.done`, the exact set
        of loaded ranges (the cursor is the end of its prefix): each chunk commits the
        ranges it completes, so a killed first sync resumes from its last loaded chunk. On
        the first run it also starts the event-log cursor at Close's current time, so that
        changes made while the walk runs, for however many days and restarts, are picked up
        by `email_changes`.
        """
        state = dlt.current.source_state()
        if run.walk is None:
            started = client.server_now()
            if "event_cursor" not in state:
                state["event_cursor"] = format_timestamp(started)
                run.fresh_event_cursor = True
            run.done = _loaded_ranges(client, state, history_start)
            todo = gaps((history_start, started - WALK_SAFETY_LAG), run.done)
            run.start(Walk(client, todo, concurrency, fields, buffer_pages=_buffer(chunk_emails)),
                      include_bodies, chunk_emails)  # fmt: skip
        run.done = run.loaded()
        for batch in run.take(chunk_emails if chunked else 0):
            yield from finish(batch.shaped)
        state["walk"] = {"done": to_state(run.loaded())}
        run_stats.windows = run.windows()

    def changes() -> Iterator[TDataItems]:
        """Yields emails created, changed or deleted since the event cursor (source state).

        Runs once the walk has finished: in the chunk that takes the walk's last pages when
        dlt extracts resources one after the other (`pipelines/loading.py` sets it), else in
        the next one. Reads the event log once per action (Close accepts
        `object_type` only with `action`), rescanning five minutes before the cursor as
        Close recommends, plus thread and lead deletions; re-fetches the affected ids with
        `id__in` and yields a deletion marker for each id Close no longer has. If the log no
        longer reaches the cursor, reconciles the whole history first. No incremental here:
        a re-fetched email is usually far behind the walk's cursor and must not be dropped.
        """
        if not run.walked:
            return  # more chunks of the walk to come
        state = dlt.current.source_state()
        scan_started = client.answered_time()  # the walk's latest answer: no request of its own
        cursor = parse_timestamp(state.get("event_cursor")) or scan_started
        since = cursor - EVENT_RESCAN
        reason = None
        if reconcile:
            reason = "reconciliation was requested"
        elif not run.fresh_event_cursor:
            reason = event_log_gap(client, state, cursor, scan_started, event_retention_days)
        if reason:
            logger.warning("%s: reconciling the whole history by id", reason)
            run_stats.reconciled_because = reason
            yield from reconcile_history(client, warehouse, run_stats, fields, include_bodies,
                                         history_start, scan_started, concurrency)  # fmt: skip
            since = scan_started - EVENT_RESCAN
        scan = EventScan(client, since, scan_started)
        yield from refresh(client, scan.changed_ids(warehouse), fields, include_bodies,
                           run_stats)  # fmt: skip
        state["event_log_reached_cursor"] = scan.reaches_start()
        state["event_cursor"] = format_timestamp(scan_started)
        run.finished = True

    return (
        _emails_resource(walk, "emails"),
        _emails_resource(changes, "email_changes"),
    )


def _loaded_ranges(
    client: CloseClient, state: dict[str, Any], history_start: datetime
) -> list[Interval]:
    """The `date_created` ranges loaded so far; on a first run, the empty years before the
    first email count as loaded (one request finds it)."""
    done = from_state(state.get("walk", {}).get("done"))
    if not done:  # a pipeline from before ranges were kept: dlt's incremental cursor
        legacy = state.get("resources", {}).get("emails", {}).get("incremental", {})
        until = parse_timestamp(legacy.get("date_created", {}).get("last_value"))
        if until is not None:
            done = [(history_start, until)]
    return done or _empty_prefix(client, history_start)


def _empty_prefix(client: CloseClient, history_start: datetime) -> list[Interval]:
    """The years before the first email: loaded by definition (one request finds them)."""
    return [(history_start, first_email_start(client, history_start))]


def walk_cursor(source_state: dict[str, Any], history_start: datetime | None = None) -> str | None:
    """The nightly cursor: where the loaded prefix of `date_created` ranges ends."""
    done = from_state(source_state.get("walk", {}).get("done"))
    until = loaded_until(done, history_start or done[0][0]) if done else None
    return format_timestamp(until) if until else None


@dlt.source(name="close")
def close_backfill(
    start: datetime,
    end: datetime,
    api_key: str = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
    start_date: str = DEFAULT_START_DATE,
    include_bodies: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
    chunk_emails: int = DEFAULT_CHUNK_EMAILS,
    max_attempts: int = MAX_ATTEMPTS,
    request_timeout: float = READ_TIMEOUT_S,
    warehouse: Any | None = None,
    stats: Any | None = None,
    run: WalkRun | None = None,
    window_days: float | None = None,
) -> DltResource:
    """Makes the warehouse equal Close for emails with `activity_at` in `[start, end)`.

    Walks every `date_created` range with an `activity_at` filter, in chunks like the first
    sync; each chunk commits the ranges it completes (`backfills` in the source state), so a
    crash resumes from the last loaded chunk. The nightly cursors are not touched.

    Returns:
        `email_backfill`, writing the `emails` table and its child tables.
    """
    check_options(concurrency, chunk_emails, max_attempts, request_timeout, start_date,
                  window_days=window_days)  # fmt: skip
    chunked = run is not None
    run = run or WalkRun()
    client, run_stats = _connect(api_key, base_url, request_timeout, max_attempts, stats, run)
    fields, history_start = _walk_settings(include_bodies, start_date)

    def backfill() -> Iterator[TDataItems]:
        """Yields every email Close has in the range, and markers for those it lacks.

        Ids the warehouse holds in the range whose `date_created` lies in a range completed
        by this chunk, but that Close did not list in this run, are checked by id and
        removed if Close no longer has them.
        """
        progress = backfill_progress(dlt.current.source_state(), start, end)
        if run.walk is None:
            started = client.server_now()
            before = from_state(progress["done"])  # a fresh backfill checks the empty prefix too
            run.done = before or _empty_prefix(client, history_start)
            todo = gaps((history_start, started + timedelta(seconds=1)), run.done)
            filters = {"activity_at__gte": format_timestamp(start),
                       "activity_at__lt": format_timestamp(end)}  # fmt: skip
            walk = Walk(client, todo, concurrency, fields, filters, _buffer(chunk_emails))
            run.start(walk, include_bodies, chunk_emails)
        else:
            before = run.done = run.loaded()
        for batch in run.take(chunk_emails if chunked else 0):
            run.seen.update(batch.shaped.versions)
            yield from finish(batch.shaped)
        after = run.loaded()
        newly = [piece for lo_hi in after for piece in gaps(lo_hi, before)]
        if warehouse is not None and newly:
            stored = warehouse.created_at("activity_at", start, end)
            unseen = {i for i, made in stored.items() if _within(made, newly)} - run.seen
            yield from refresh(client, unseen, fields, include_bodies, run_stats)
        progress["done"] = to_state(after)
        progress["finished"] = run.finished = run.walked
        run_stats.windows = run.windows()

    return _emails_resource(backfill, "email_backfill")


def _within(moment: datetime | None, intervals: list[Interval]) -> bool:
    return moment is not None and any(lo <= moment < hi for lo, hi in intervals)


def _buffer(chunk_emails: int) -> int:
    """Decoded pages held between fetching and shaping: enough to keep the workers fetching
    while the shaping thread is busy, few enough to keep memory flat (a page of 100 emails
    with bodies takes about 1.2 MB as Python objects); `_depth` holds the lookahead."""
    return max(4, min(BUFFER_PAGES, chunk_emails // PAGE_LIMIT)) if chunk_emails else BUFFER_PAGES


def _depth(chunk_emails: int) -> int:
    """Shaped batches held ahead of the loader: about half a chunk's worth, at most
    `PREFETCH_BATCHES` (each holds its emails' arrow tables, bodies included)."""
    return max(2, min(PREFETCH_BATCHES, chunk_emails // BATCH_EMAILS // 2))


def backfill_key(start: datetime, end: datetime) -> str:
    return f"{format_timestamp(start)}/{format_timestamp(end)}"


def backfill_progress(state: dict[str, Any], start: datetime, end: datetime) -> dict[str, Any]:
    """The saved progress of the backfill of `[start, end)`; a finished one starts over.

    `done` holds the `date_created` ranges walked (with the `activity_at` filter) so far.
    """
    backfills = state.setdefault("backfills", {})
    progress = backfills.get(backfill_key(start, end))
    if progress is None or progress.get("finished") or "done" not in progress:
        progress = {"done": [], "finished": False}
        backfills[backfill_key(start, end)] = progress
    return progress  # type: ignore[no-any-return]


def _walk_settings(include_bodies: bool, start_date: str) -> tuple[Sequence[str] | None, datetime]:
    """The fields to ask Close for, and where the history starts (checked by `check_options`)."""
    history_start = parse_timestamp(start_date)
    assert history_start is not None
    return (None if include_bodies else NON_BODY_FIELDS), history_start


def _connect(
    api_key: str,
    base_url: str,
    request_timeout: float,
    max_attempts: int,
    stats: Any | None,
    run: WalkRun,
) -> tuple[CloseClient, RunStats]:
    """The API client of one command (kept in `run` across its chunk loads) and its stats."""
    run_stats: RunStats = stats or RunStats()
    if run.client is None:
        timeout = (CONNECT_TIMEOUT_S, request_timeout)
        run.client = CloseClient(api_key, base_url, timeout, max_attempts, stats=run_stats.requests)
    return run.client, run_stats


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
