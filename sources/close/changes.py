"""Change capture: Close's event log, re-fetching by id, and reconciliation by id.

Close has no `date_updated` filter on activities; its only change feed is the event log
(`/event/`, 30 days of history, newest first, cursor pagination). The sync reads it since
its cursor, re-fetches the affected emails by id, and turns ids Close no longer has into
deletion markers. When the log no longer covers the cursor, `reconcile` compares every id
and `date_updated` in Close with the warehouse instead.
"""

import logging
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol

from dlt.sources import TDataItems

from .client import CloseClient, RequestStats
from .rows import deletion_items, shape
from .settings import (
    ACTIVITIES_PATH,
    EMAIL_ACTIONS,
    EMAIL_OBJECT_TYPE,
    EVENT_PAGE_LIMIT,
    EVENTS_PATH,
    LEAD_OBJECT_TYPE,
    THREAD_OBJECT_TYPE,
)
from .timestamps import format_timestamp, parse_timestamp
from .walk import fetch_by_ids, walk_all

logger = logging.getLogger(__name__)


class Warehouse(Protocol):
    """What the source may ask of the destination it loads into (see `pipelines/`)."""

    def ids_where(self, column: str, values: Collection[str]) -> set[str]:
        """Ids of stored emails whose `column` is one of `values`."""
        ...

    def versions(
        self, field: str | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, datetime]:
        """`id -> date_updated` of stored emails, all or those with `field` in `[start, end)`."""
        ...

    def created_at(self, field: str, start: datetime, end: datetime) -> dict[str, datetime]:
        """`id -> date_created` of stored emails with `field` in `[start, end)`."""
        ...


class RunStats:
    """What one run did, for the run summary (filled by the source and its client)."""

    def __init__(self) -> None:
        self.requests = RequestStats()
        self.deleted = 0
        self.reconciled_because: str | None = None
        self.windows = 0


def scan_events(client: CloseClient, since: datetime, **filters: str) -> Iterator[dict[str, Any]]:
    """Yields events with `date_updated >= since`, newest first, following `cursor_next`."""
    params: dict[str, Any] = dict(
        filters, date_updated__gte=format_timestamp(since), _limit=EVENT_PAGE_LIMIT
    )
    while True:
        page = client.get(EVENTS_PATH, params)
        events = page.get("data") or []
        yield from events
        cursor = page.get("cursor_next")
        if not cursor or not events:
            return
        params["_cursor"] = cursor


# What the event log is read for: each email action (Close accepts `object_type` only with
# `action`), and deleted threads and leads, whose emails go with them.
SCANS = [(EMAIL_OBJECT_TYPE, action) for action in EMAIL_ACTIONS] + [
    (THREAD_OBJECT_TYPE, "deleted"),
    (LEAD_OBJECT_TYPE, "deleted"),
]


class EventScan:
    """The event log since `since`, read in the background from the moment it is made.

    The scans are independent, so they run at once (under the shared rate limiter): a run
    waits for the longest, not for their sum. Whether the log reaches back to `started`
    (the next run's cursor) is asked beside them rather than after them.
    """

    def __init__(self, client: CloseClient, since: datetime, started: datetime) -> None:
        pool = ThreadPoolExecutor(len(SCANS) + 1, thread_name_prefix="close-events")
        self._found: dict[tuple[str, str], Future[set[str]]] = {
            scan: pool.submit(_object_ids, client, since, scan) for scan in SCANS
        }
        self._reached = pool.submit(event_log_reaches, client, started)
        pool.shutdown(wait=False)  # the threads end with their scans

    def changed_ids(self, warehouse: Warehouse | None) -> set[str]:
        """Ids of emails the log shows created, updated or deleted, also through deleted
        threads and leads (looked up in the warehouse); raises what a scan raised."""
        found = {scan: future.result() for scan, future in self._found.items()}
        ids = set().union(*(found[(EMAIL_OBJECT_TYPE, action)] for action in EMAIL_ACTIONS))
        for object_type, column in ((THREAD_OBJECT_TYPE, "thread_id"), (LEAD_OBJECT_TYPE, "lead_id")):  # fmt: skip
            gone = found[(object_type, "deleted")]
            if gone and warehouse is not None:
                ids |= warehouse.ids_where(column, gone)
        return ids

    def reaches_start(self) -> bool:
        """Whether the log holds an event at or before `started` (see `event_log_reaches`)."""
        return self._reached.result()


def _object_ids(client: CloseClient, since: datetime, scan: tuple[str, str]) -> set[str]:
    events = scan_events(client, since, object_type=scan[0], action=scan[1])
    return {event["object_id"] for event in events}


def event_log_reaches(client: CloseClient, moment: datetime) -> bool:
    """Whether the event log still holds an event at or before `moment`.

    Close keeps 30 days of events. If none at or before our cursor can be retrieved any more,
    changes made between the cursor and the oldest retained event are lost to the log.
    """
    page = client.get(EVENTS_PATH, {"date_updated__lte": format_timestamp(moment), "_limit": 1})
    return bool(page.get("data"))


def first_email_start(client: CloseClient, start: datetime) -> datetime:
    """`start`, or the oldest email's `date_created` if later (one request), so that a walk of
    the whole history skips the empty years before the first email."""
    page = client.get(
        ACTIVITIES_PATH,
        {"_type": "Email", "_order_by": "date_created", "_limit": 1, "_fields": "date_created"},
    )
    data = page.get("data") or []
    first = parse_timestamp(data[0]["date_created"]) if data else None
    return max(start, first) if first else start


def event_log_gap(
    client: CloseClient,
    state: dict[str, Any],
    cursor: datetime,
    now: datetime,
    retention_days: float,
) -> str | None:
    """Why the event log cannot be trusted to cover `[cursor, now]`, or None if it can.

    The log itself tells: once no event at or before the cursor can be retrieved, events
    after it may have been dropped too. An org whose log never reached back that far (a
    quiet one) is judged by the configured retention alone.
    """
    if now - cursor > timedelta(days=retention_days):
        return f"the last event scan was {now - cursor} ago, beyond the {retention_days:g}-day retention"
    if not event_log_reaches(client, cursor) and state.get("event_log_reached_cursor"):
        return f"Close's event log no longer reaches back to the cursor {format_timestamp(cursor)}"
    return None


def refresh(
    client: CloseClient,
    ids: Collection[str],
    fields: Sequence[str] | None,
    include_bodies: bool,
    stats: RunStats,
) -> Iterator[TDataItems]:
    """Yields the current version of each id Close has, and a deletion marker for the rest."""
    if not ids:
        return
    found = set()
    batch = []
    for email_obj in fetch_by_ids(client, ids, fields):
        found.add(email_obj["id"])
        batch.append(email_obj)
        if len(batch) >= 1000:
            yield from shape(batch, include_bodies)
            batch = []
    # Markers must outrank any version of the email in the same load (dedup keeps the newest
    # `date_updated`): date them after Close's answer that showed the email gone.
    deleted_at = client.last_server_time() + timedelta(seconds=1)
    gone = set(ids) - found
    stats.deleted += len(gone)
    if batch:
        yield from shape(batch, include_bodies)
    yield from deletion_items(gone, deleted_at)


def reconcile_history(
    client: CloseClient,
    warehouse: Warehouse | None,
    stats: RunStats,
    fields: Sequence[str] | None,
    include_bodies: bool,
    start: datetime,
    until: datetime,
    concurrency: int,
) -> Iterator[TDataItems]:
    """Compares every email's id and `date_updated` in Close with the warehouse.

    Lists the whole history cheaply (`_fields=id,date_updated`), then re-fetches what is new
    or changed and removes what Close no longer has.
    """
    if warehouse is None:
        raise ValueError("reconciliation needs a warehouse to compare with")
    history = [(first_email_start(client, start), until)]
    in_close: dict[str, datetime | None] = {}
    for page in walk_all(client, history, concurrency, ("id", "date_updated")):
        in_close.update((e["id"], parse_timestamp(e.get("date_updated"))) for e in page)
    stored = warehouse.versions()
    changed = {i for i, updated in in_close.items() if stored.get(i) != updated}
    missing = stored.keys() - in_close.keys()
    logger.info(
        "reconcile: %d new or changed, %d to check for deletion", len(changed), len(missing)
    )
    yield from refresh(client, changed | missing, fields, include_bodies, stats)
