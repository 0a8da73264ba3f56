"""Walking Close's email list: anchored pages inside `date_created` spans that idle workers split.

The list endpoint sorts newest `date_created` first and pages with `_skip`. Plain `_skip`
paging over changing data drifts: an email inserted above the current offset pushes rows
into the next page (duplicates), one deleted below it pulls a row into the page already
read (a miss). A span's walk therefore anchors every page at the oldest `date_created`
already seen (`date_created__lte=<anchor>`) and skips only the rows seen *at* that exact
timestamp, so inserts and deletes elsewhere cannot shift the pages, and `_skip` stays tiny
however large the span is (Close caps it at 250,000).

The work is a set of spans, one per worker to begin with. A worker that runs dry splits
the unread part `[lo, anchor)` of the busiest span in two and takes the older half; the
owner sees its new lower bound before its next request (and drops rows below it from a
page already in flight). Empty and sparse stretches thus cost about one request each,
dense ones are shared by all workers, and the total stays near `ceil(emails / 100)`.

Every page goes out with the interval of its span that is now fully read, so the consumer
(`Walk.pages`) can commit exactly which ranges are loaded (see `progress.py`).
"""

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .client import CloseApiError, CloseClient, Stopped
from .progress import Interval
from .settings import (
    EMAILS_PATH,
    ID_BATCH_SIZE,
    MAX_SKIP,
    MAX_URL_ID_LIST_CHARS,
    MIN_SPLIT_ROWS,
    PAGE_LIMIT,
)
from .timestamps import format_timestamp, parse_timestamp

logger = logging.getLogger(__name__)

TICK = timedelta(microseconds=1)  # Close's timestamp resolution


@dataclass
class Span:
    """`[lo, hi)` of `date_created`, walked by one worker; `lo` rises when it is split."""

    lo: datetime
    hi: datetime
    id: int = 0
    anchor: datetime | None = None  # oldest date_created read so far
    rows: int = 0  # rows read so far
    splittable: bool = True

    def unread_estimate(self) -> float:
        """Rows likely left in `[lo, anchor)`, from the density of what was read."""
        if self.anchor is None or self.anchor - self.lo < 2 * TICK:
            return 0.0
        read_span = (self.hi - self.anchor).total_seconds() or 1e-6
        return self.rows * (self.anchor - self.lo).total_seconds() / read_span


@dataclass(frozen=True)
class Page:
    """Emails of one answer, and the interval of their span now completely read."""

    emails: list[dict[str, Any]]
    span_id: int
    done: Interval


class Spans:
    """The spans of one walk, handed to workers; thread-safe."""

    def __init__(self, intervals: Sequence[Interval], workers: int) -> None:
        self._lock = threading.Condition()
        self._pending = [Span(lo, hi) for lo, hi in split_evenly(intervals, workers)]
        self.initial = len(self._pending)
        self._active: dict[int, Span] = {}
        self._next_id = 0
        self.splits = 0
        # a span fell back to plain `_skip` paging, which may list an email twice
        self.unanchored = False

    def claim(self, stop: threading.Event) -> Span | None:
        """The next span to walk: a pending one, else half of the busiest; None when all done."""
        with self._lock:
            while not stop.is_set():
                span = self._pending.pop(0) if self._pending else self._steal()
                if span is not None:
                    span.id, self._next_id = self._next_id, self._next_id + 1
                    self._active[span.id] = span
                    return span
                if not self._active:
                    return None
                self._lock.wait(0.05)  # a busy span may become splittable; or all finish
            return None

    def _steal(self) -> Span | None:
        """Splits the unread part of the span with the most rows left; None if none is worth it."""
        busiest = max(
            (s for s in self._active.values() if s.splittable),
            key=Span.unread_estimate,
            default=None,
        )
        if busiest is None or busiest.unread_estimate() < MIN_SPLIT_ROWS:
            return None
        assert busiest.anchor is not None
        middle = busiest.lo + (busiest.anchor - busiest.lo) / 2
        stolen = Span(busiest.lo, middle)
        busiest.lo = middle
        self.splits += 1
        return stolen

    def lower_bound(self, span: Span) -> datetime:
        with self._lock:
            return span.lo

    def settle(
        self, span: Span, emails: list[dict[str, Any]], created: list[datetime], at_anchor: set[str]
    ) -> tuple[list[dict[str, Any]], datetime, bool]:
        """Takes a page into `span`: the fresh emails, the span's lower bound, and whether the
        page reached below it (a split while the page was in flight: the rest is the thief's).

        Under the lock, so that no split sees the span between the page and its anchor.
        """
        with self._lock:
            lo, anchor, fresh = span.lo, span.anchor, []
            for email_obj, moment in zip(emails, created, strict=True):
                if moment < lo:
                    break
                if moment == anchor and email_obj["id"] in at_anchor:
                    continue
                if anchor is None or moment < anchor:
                    anchor = moment
                    at_anchor.clear()
                at_anchor.add(email_obj["id"])
                fresh.append(email_obj)
            span.anchor = anchor
            span.rows += len(fresh)
            self._lock.notify_all()  # the span may have become worth splitting
            return fresh, lo, bool(created) and created[-1] < lo

    def all_read(self) -> bool:
        """Whether every span is finished: a worker finishes its span after handing over
        the span's last page, so all pages of the walk are then in the consumer's buffer."""
        with self._lock:
            return not self._pending and not self._active

    def finish(self, span: Span) -> None:
        with self._lock:
            self._active.pop(span.id, None)
            self._lock.notify_all()

    def wake(self) -> None:
        with self._lock:
            self._lock.notify_all()


def split_evenly(intervals: Sequence[Interval], parts: int) -> list[Interval]:
    """Cuts `intervals` into about `parts` pieces of equal duration, newest first."""
    total = sum(((hi - lo) for lo, hi in intervals), timedelta())
    if not intervals or parts <= 1 or total <= TICK * parts:
        return sorted(intervals, reverse=True)
    piece = total / parts
    pieces = []
    for lo, hi in intervals:
        start = lo
        while hi - start > piece * 1.5:
            end = start + piece
            pieces.append((start, end))
            start = end
        pieces.append((start, hi))
    return sorted(pieces, reverse=True)  # recent history is usually the densest: start there


def walk_span(
    client: CloseClient,
    spans: Spans,
    span: Span,
    fields: Sequence[str] | None = None,
    filters: dict[str, str] | None = None,
) -> Iterator[Page]:
    """Yields the pages of `span`, newest `date_created` first, each email once.

    Pages are anchored at the oldest `date_created` seen so far (see the module docstring).
    Anchoring relies on Close's newest-first order, which is observed, not documented: a
    page out of that order switches the span to plain `_skip` paging from its start.
    """
    base: dict[str, Any] = dict(filters or {}, _limit=PAGE_LIMIT)
    if fields:
        base["_fields"] = ",".join(sorted(set(fields) | {"id", "date_created"}))
    anchor: datetime | None = None
    at_anchor: set[str] = set()  # ids read with date_created == anchor (kept by `settle`)
    listed = 0  # rows listed from the span's start, for plain paging
    while True:
        lo = spans.lower_bound(span)
        params = dict(base, date_created__gte=format_timestamp(lo))
        params["date_created__lt"] = format_timestamp(span.hi)
        params["_skip"] = len(at_anchor) if span.splittable else listed
        if span.splittable and anchor is not None:
            params["date_created__lte"] = format_timestamp(anchor)
        if params["_skip"] > MAX_SKIP:
            raise CloseApiError(
                f"more than {MAX_SKIP} emails share the date_created {anchor} and cannot be paged"
            )
        page = client.get(EMAILS_PATH, params)
        emails = page.get("data") or []
        created = [parse_timestamp(e["date_created"]) for e in emails]
        if span.splittable and any(b > a for a, b in zip(created, created[1:], strict=False)):  # type: ignore[operator]
            logger.warning("Close listed emails out of newest-first order: plain _skip paging")
            span.splittable, listed, anchor, span.anchor = False, 0, None, None
            spans.unanchored = True
            at_anchor.clear()
            continue
        listed += len(emails)
        fresh, lo, below = spans.settle(span, emails, created, at_anchor)  # type: ignore[arg-type]
        anchor = span.anchor
        finished = not page.get("has_more") or not emails or below
        if finished:
            yield Page(fresh, span.id, (lo, span.hi))
        elif anchor is None:
            yield Page(fresh, span.id, (span.hi, span.hi))
        else:
            yield Page(fresh, span.id, (anchor + TICK, span.hi))
        if finished:
            return


@dataclass
class Walk:
    """Walks `intervals` of `date_created` with `concurrency` workers into a bounded buffer.

    `pages()` may be read in several sittings (one per chunk): the workers keep fetching
    into the buffer meanwhile, which overlaps the API's waits with loading. `close()` stops
    the workers, also those sleeping in the rate limiter.
    """

    client: CloseClient
    intervals: Sequence[Interval]
    concurrency: int
    fields: Sequence[str] | None = None
    filters: dict[str, str] | None = None
    buffer_pages: int = 200
    finished: bool = False
    _threads: list[threading.Thread] = field(default_factory=list)
    _iterator: Iterator[Page] | None = None

    def __post_init__(self) -> None:
        self.spans = Spans(self.intervals, self.concurrency)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, self.buffer_pages))
        self._running = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()  # this walk only: the client may serve on after it

    def backlogged(self) -> bool:
        """Whether the buffer is at least half full: the workers outpace the consumer."""
        return self._queue.qsize() >= self._queue.maxsize // 2

    def buffered(self) -> int:
        """Pages (and worker ends) waiting in the buffer."""
        return self._queue.qsize()

    def fetched(self) -> bool:
        """Whether the workers have read every page: all that is left is in the buffer."""
        return self.spans.all_read()

    def pages(self) -> Iterator[Page]:
        """The walk's pages in arrival order; resumes where the last sitting stopped."""
        if self._iterator is None:
            self._iterator = self._consume()
        return self._iterator

    def _consume(self) -> Iterator[Page]:
        self._start()
        for item in handed_over(self._queue, self.close, end=_CLOSED):
            if item is None:  # a worker ended
                with self._lock:
                    self._running -= 1
                    if self._running == 0:
                        self.finished = True
                        return
                continue
            yield item

    def _start(self) -> None:
        workers = max(1, self.concurrency)
        self._running = workers
        for number in range(workers):
            thread = threading.Thread(target=self._work, name=f"close-walk-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        try:
            while (span := self.spans.claim(self._stop)) is not None:
                try:
                    for page in walk_span(self.client, self.spans, span, self.fields, self.filters):
                        self._put(page)
                finally:
                    self.spans.finish(span)
            self._put(None)
        except Stopped:
            pass
        except BaseException as exc:  # handed to the consumer, which re-raises it
            try:
                self._put(exc)
                self._put(None)
            except Stopped:
                pass

    def _put(self, item: Any) -> None:
        put_unless_stopped(self._queue, item, self._stop)

    def close(self, grace_s: float = 2.0) -> None:
        """Stops the workers; waits up to `grace_s` for them (daemon threads: one stuck in a
        slow answer does not hold the process, and nothing it fetches is used)."""
        self._stop.set()
        self.spans.wake()
        deadline = time.monotonic() + grace_s
        while any(t.is_alive() for t in self._threads) and time.monotonic() < deadline:
            try:
                self._queue.get(timeout=0.05)  # make room for workers blocked on a full buffer
            except queue.Empty:
                pass
        self._threads.clear()
        try:  # wakes a consumer in another thread (`Prefetch`) waiting for the next page
            self._queue.put_nowait(_CLOSED)
        except queue.Full:
            pass


_CLOSED = object()  # put by `Walk.close`: the walk ends without finishing


def put_unless_stopped(handover: "queue.Queue[Any]", item: Any, stop: threading.Event) -> None:
    """Puts `item` into a bounded queue, waiting for room; raises `Stopped` when `stop` is set
    while there is none (the consumer went away: a blocked producer thread ends)."""
    while True:
        try:
            handover.put(item, timeout=0.1)
            return
        except queue.Full:
            if stop.is_set():
                raise Stopped("stopped") from None


def handed_over(handover: "queue.Queue[Any]", close: Callable[[], None], end: Any) -> Iterator[Any]:
    """The items producer threads put into `handover`, until `end`; an exception put there is
    raised here, after `close()` has stopped the producers."""
    while (item := handover.get()) is not end:
        if isinstance(item, BaseException):
            close()
            raise item
        yield item


def walk_all(
    client: CloseClient,
    intervals: Sequence[Interval],
    concurrency: int,
    fields: Sequence[str] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Every page of the walk of `intervals` in one go (e.g. to list all ids)."""
    walk = Walk(client, intervals, concurrency, fields)
    try:
        for page in walk.pages():
            if page.emails:
                yield page.emails
    finally:
        if not walk.finished:
            walk.close()


# ------------------------------------------------------------------------------ ids


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
