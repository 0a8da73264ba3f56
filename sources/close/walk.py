"""Walking Close's email list and event log, and shaping emails into rows.

The list endpoint sorts newest `date_created` first and pages with `_skip`. Plain `_skip`
paging over changing data drifts: an email inserted above the current offset pushes rows
into the next page (duplicates), one deleted below it pulls a row into the page already
read (a miss). `walk_window` therefore anchors every page at the oldest `date_created`
already seen (`date_created__lte=<anchor>`) and skips only the rows seen *at* that exact
timestamp, so inserts and deletes elsewhere in the window cannot shift the pages, and
`_skip` stays tiny however large the window is (Close caps it at 250,000).
"""

import logging
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .client import CloseApiError, CloseClient
from .settings import EMAILS_PATH, ID_BATCH_SIZE, MAX_SKIP, MAX_URL_ID_LIST_CHARS, PAGE_LIMIT
from .timestamps import format_timestamp, parse_timestamp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """A half-open range `[start, end)` of `field` (`date_created` or `activity_at`).

    A self-contained unit of work: it carries its own bounds and pages, so several windows
    can be fetched at once under one rate limiter.
    """

    field: str
    start: datetime
    end: datetime

    def params(self) -> dict[str, str]:
        return {
            f"{self.field}__gte": format_timestamp(self.start),
            f"{self.field}__lt": format_timestamp(self.end),
        }


def make_windows(field: str, start: datetime, end: datetime, length: timedelta) -> list[Window]:
    """Splits `[start, end)` into consecutive windows of at most `length`, oldest first."""
    windows = []
    while start < end:
        upper = min(end, start + length)
        windows.append(Window(field, start, upper))
        start = upper
    return windows


def walk_window(
    client: CloseClient, window: Window, fields: Sequence[str] | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Yields the pages of emails in `window`, newest `date_created` first, each email once.

    Pages are anchored at the oldest `date_created` seen so far (see the module docstring),
    which makes the walk immune to `_skip` drift and keeps `_skip` far below `max_skip`.
    Anchoring relies on Close's newest-first order, which is observed, not documented: a
    page out of that order switches the window to plain `_skip` paging from its start.
    """
    base = window.params()
    if fields:
        base["_fields"] = ",".join(sorted(set(fields) | {"id", "date_created"}))
    anchored = True
    anchor: datetime | None = None
    seen_at_anchor = 0  # rows seen with date_created == anchor (anchored paging)
    listed = 0  # rows listed since the window's start (plain paging)
    seen_ids: set[str] = set()
    while True:
        skip = seen_at_anchor if anchored else listed
        params: dict[str, Any] = dict(base, _limit=PAGE_LIMIT, _skip=skip)
        if anchored and anchor is not None:
            params["date_created__lte"] = format_timestamp(anchor)
        if skip > MAX_SKIP:
            raise CloseApiError(
                f"more than {MAX_SKIP} emails in the window {window.start} - {window.end}"
                " cannot be paged; lower window_days"
            )
        page = client.get(EMAILS_PATH, params)
        emails = page.get("data") or []
        listed += len(emails)
        fresh = [e for e in emails if e["id"] not in seen_ids]
        if fresh:
            seen_ids.update(e["id"] for e in fresh)
            yield fresh
        if not page.get("has_more") or not emails:
            return
        if not anchored:
            continue
        created = [parse_timestamp(e["date_created"]) for e in emails]
        if any(newer > older for older, newer in zip(created, created[1:], strict=False)):  # type: ignore[operator]
            logger.warning("Close listed emails out of newest-first order: plain _skip paging")
            anchored, listed = False, 0
            continue
        for moment in created:
            if moment == anchor:
                seen_at_anchor += 1
            elif anchor is None or moment < anchor:  # type: ignore[operator]
                anchor, seen_at_anchor = moment, 1


def walk_windows(
    client: CloseClient,
    windows: Sequence[Window],
    concurrency: int,
    fields: Sequence[str] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Walks several windows at once (`concurrency` threads) and yields their pages.

    Pages arrive in completion order; a bounded queue keeps memory flat when the consumer
    (dlt's normalizer buffer) is slower than the API.
    """
    if concurrency <= 1 or len(windows) <= 1:
        for window in windows:
            yield from walk_window(client, window, fields)
        return
    pages: queue.Queue[Any] = queue.Queue(maxsize=concurrency * 4)
    stop = threading.Event()

    def hand_over(item: Any) -> bool:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(window: Window) -> None:
        try:
            for page in walk_window(client, window, fields):
                if not hand_over(page):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            hand_over(exc)

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="close-window")
    futures = [pool.submit(run, window) for window in windows]
    try:
        finished = 0
        while finished < len(futures):
            try:
                item = pages.get(timeout=0.1)
            except queue.Empty:
                finished = sum(f.done() for f in futures)
                continue
            if isinstance(item, BaseException):
                raise item
            yield item
        while not pages.empty():
            item = pages.get_nowait()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def fetch_by_ids(
    client: CloseClient, ids: Iterable[str], fields: Sequence[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Yields the emails among `ids` that exist in Close now (`id__in`, 100 per request)."""
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), ID_BATCH_SIZE):
        batch = ordered[start : start + ID_BATCH_SIZE]
        params: dict[str, Any] = {"id__in": ",".join(batch), "_limit": PAGE_LIMIT}
        if fields:
            params["_fields"] = ",".join(fields)
        if len(params["id__in"]) > MAX_URL_ID_LIST_CHARS:
            page = client.get_long(EMAILS_PATH, params)
        else:
            page = client.get(EMAILS_PATH, params)
        yield from page.get("data") or []
