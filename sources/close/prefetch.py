"""Shaping the walk's pages ahead, in a thread of its own, while the previous chunk loads.

dlt extracts, normalizes and loads one chunk after the other on the main thread, and the
load is mostly the destination's own work (DuckDB and the PostgreSQL driver run without
Python's GIL). Shaping pages into arrow tables is the costliest Python step of a sync, so
this thread does it meanwhile: it shapes each of the walk's pages as it arrives
(`rows.preshape`), gathers the shaped pages into batches (of `BATCH_EMAILS`, or a smaller
chunk) and puts them into a bounded queue. The next chunk's extract then only hands finished
batches to dlt (`rows.finish`). Pages are shaped one by one, not a batch at a time, so that
no decoded JSON waits for a batch to fill: the shaped tables take a third of its memory.
"""

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .client import Stopped
from .progress import Interval
from .rows import Shaped, combine, preshape
from .settings import PAGE_LIMIT
from .walk import Walk, handed_over, put_unless_stopped


@dataclass(frozen=True)
class Batch:
    """Shaped emails of several pages, and what of each span is read once they are loaded."""

    shaped: Shaped
    done: dict[int, Interval]  # span id -> its completely read interval
    emails: int


@dataclass
class _Gathering:
    """The shaped pages of the batch being gathered."""

    parts: list[Shaped] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    done: dict[int, Interval] = field(default_factory=dict)

    def add(self, shaped: Shaped, span_id: int, done: Interval) -> None:
        self.parts.append(shaped)
        self.ids.update(shaped.versions)
        self.done[span_id] = done


class Prefetch:
    """Batches of the walk's pages, shaped by a thread of its own into a queue of `depth`;
    a batch holds at least `batch_emails` emails (fewer at the walk's end, or before an
    email listed twice).

    `batches()` may be read in several sittings (one per chunk), like `Walk.pages()`;
    `finished` turns true once the last batch has been read.
    """

    def __init__(
        self, walk: Walk, include_bodies: bool, depth: int, batch_emails: int, stored: bool = True
    ) -> None:
        self.walk = walk
        self.include_bodies = include_bodies
        self.stored = stored  # whether the walk's emails may be in the warehouse already
        self.batch_emails = batch_emails
        self.finished = False
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._iterator: Iterator[Batch] | None = None

    def batches(self) -> Iterator[Batch]:
        """The shaped batches in the walk's order; resumes where the last sitting stopped."""
        if self._iterator is None:
            self._iterator = self._consume()
        return self._iterator

    def backlogged(self) -> bool:
        """Whether the walk outpaces the loader: the shaped batches fill their queue, or the
        pages the shaping thread has not taken yet fill half of theirs."""
        return self._queue.full() or self.walk.backlogged()

    def most_left(self) -> int:
        """At most how many emails are still to be handed out once the walk has fetched its
        last page: those of the buffered pages, the shaped batches, and one batch in shaping."""
        batches = self._queue.qsize() + 1
        return self.walk.buffered() * PAGE_LIMIT + batches * self.batch_emails

    def close(self) -> None:
        """Stops the thread and the walk's workers."""
        self._stop.set()
        if not self.walk.finished:
            self.walk.close()

    def _consume(self) -> Iterator[Batch]:
        self._thread = threading.Thread(target=self._work, name="close-shape", daemon=True)
        self._thread.start()
        yield from handed_over(self._queue, self.close, end=None)
        self.finished = True

    def _work(self) -> None:
        batch = _Gathering()
        try:
            for page in self.walk.pages():
                shaped = self._shape(page.emails)
                if not batch.ids.isdisjoint(shaped.versions):  # listed twice (plain paging)
                    batch = self._hand_over(batch)
                batch.add(shaped, page.span_id, page.done)
                if len(batch.ids) >= self.batch_emails:
                    batch = self._hand_over(batch)
            if batch.parts:
                self._hand_over(batch)
            self._put(None)
        except Stopped:
            pass
        except BaseException as exc:  # handed to the consumer, which re-raises it
            try:
                self._put(exc)
            except Stopped:
                pass

    def _hand_over(self, batch: _Gathering) -> _Gathering:
        """Queues the gathered pages as one batch; returns an empty one to go on with."""
        self._put(Batch(combine(batch.parts), batch.done, len(batch.ids)))
        return _Gathering()

    def _shape(self, emails: list[dict[str, Any]]) -> Shaped:
        # plain `_skip` paging may list an email twice, also across chunks: markers again,
        # and the load's memory looks each email up
        unanchored = self.walk.spans.unanchored
        return preshape(emails, self.include_bodies, self.stored or unanchored, not unanchored)

    def _put(self, item: Any) -> None:
        put_unless_stopped(self._queue, item, self._stop)
