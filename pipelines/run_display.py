"""Progress of a running `sync` or `backfill` on stderr: live on a terminal, sparse lines else.

dlt's own collectors (`dlt.progress`) count dlt's steps — items extracted, files normalized,
jobs loaded — and restart with every step of every chunk's load; a chunked run needs its
own counters across loads (emails fetched, chunks done, requests against Close's limit). So
the figures come from the run, and the drawing from well-kept libraries: `rich` (already a
dlt dependency) for the terminal, plain lines for cron and orchestrators, at most one every
30 s and none in the first 10 s, so that a run failing early prints only its error line.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, TextIO

from sources.close.progress import gaps

FIRST_LINE_AFTER_S = 10.0
LINE_EVERY_S = 30.0
LIVE_REFRESH_S = 0.5


@dataclass
class RunProgress:
    """The live figures of one run; the runner fills it in as the run goes."""

    stats: Any = None  # sources.close.RunStats
    walk: Any = None  # sources.close.WalkRun
    counter: Any = None  # pipelines.change_counts.EmailChangeCounter
    chunks: int = 0
    started: float = field(default_factory=time.monotonic)

    def emails(self) -> int:
        return int(self.counter.emails_seen) if self.counter is not None else 0

    def requests(self) -> int:
        return int(self.stats.requests.requests) if self.stats is not None else 0

    def announced_rps(self) -> float | None:
        """The lowest limit Close announced over the groups in use (requests/s)."""
        client = getattr(self.walk, "client", None)
        rates = client.limiter.announced() if client is not None else {}
        return min(rates.values()) if rates else None

    def fraction(self) -> float | None:
        """Share of the walk's `date_created` ranges read (None before the walk starts)."""
        walk = getattr(getattr(self.walk, "walk", None), "intervals", None)
        if not walk:
            return None
        total = sum((hi - lo).total_seconds() for lo, hi in walk)
        if total <= 0:
            return 1.0
        loaded = self.walk.loaded()
        left = sum((hi - lo).total_seconds() for span in walk for lo, hi in gaps(span, loaded))
        return 1.0 if self.walk.finished else max(0.0, min(1.0, 1 - left / total))


class Display(Protocol):
    def tick(self, now: float) -> None: ...
    def close(self) -> None: ...


class _Rate:
    """Requests per second since the previous sample."""

    def __init__(self, progress: RunProgress) -> None:
        self.progress = progress
        self.last = (progress.started, 0)

    def sample(self, now: float) -> float:
        then, count = self.last
        current = self.progress.requests()
        self.last = (now, current)
        return (current - count) / (now - then) if now > then else 0.0


def describe(progress: RunProgress, rps: float, now: float) -> str:
    """One line: emails fetched, chunks loaded, requests/s against the limit, range and ETA."""
    parts = [f"{progress.emails():,} emails fetched", f"{progress.chunks} chunks loaded"]
    limit = progress.announced_rps()
    parts.append(f"{rps:.1f} req/s" + (f" (limit {limit:.1f})" if limit else ""))
    fraction = progress.fraction()
    if fraction is not None:
        parts.append(f"walk {100 * fraction:.0f}% of date range")
        elapsed = now - progress.started
        if 0 < fraction < 1:
            eta = timedelta(seconds=round(elapsed * (1 - fraction) / fraction))
            parts.append(f"ETA {eta}")
    return ", ".join(parts)


class LineDisplay:
    """Plain `progress: …` lines: none before `first_after` s, then one every `every` s."""

    def __init__(
        self,
        progress: RunProgress,
        stream: TextIO,
        first_after: float = FIRST_LINE_AFTER_S,
        every: float = LINE_EVERY_S,
    ) -> None:
        self.progress, self.stream = progress, stream
        self.first_after, self.every = first_after, every
        self.rate = _Rate(progress)
        self.last_line: float | None = None

    def tick(self, now: float) -> None:
        if now - self.progress.started < self.first_after:
            return
        if self.last_line is not None and now - self.last_line < self.every:
            return
        self.last_line = now
        line = describe(self.progress, self.rate.sample(now), now)
        print(f"progress: {line}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


class LiveDisplay:
    """A `rich` progress bar over the walk's date range, with the run's figures beside it."""

    def __init__(self, progress: RunProgress, stream: TextIO, command: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = progress
        self.rate = _Rate(progress)
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}"),
            console=Console(file=stream, force_terminal=True),
            auto_refresh=False,
        )
        self.task = self.bar.add_task(command, total=100, detail="starting")
        self.bar.start()

    def tick(self, now: float) -> None:
        fraction = self.progress.fraction()
        rps = self.rate.sample(now)
        limit = self.progress.announced_rps()
        detail = (
            f"{self.progress.emails():,} emails · {self.progress.chunks} chunks · "
            f"{rps:.1f} req/s" + (f" of {limit:.1f}" if limit else "")
        )
        completed = 100 * fraction if fraction is not None else 0
        self.bar.update(self.task, completed=completed, detail=detail)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.stop()


class Ticker:
    """Calls `display.tick` every `interval` seconds on a daemon thread until stopped."""

    def __init__(
        self, display: Display, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.display, self.interval, self.clock = display, interval, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="close-progress", daemon=True)

    def __enter__(self) -> "Ticker":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.display.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.display.tick(self.clock())


def make_display(
    mode: str, progress: RunProgress, stream: TextIO, command: str
) -> tuple[Display, float] | None:
    """The display for `mode` (`live`, `lines` or `off`) and how often to tick it."""
    if mode == "live":
        return LiveDisplay(progress, stream, command), LIVE_REFRESH_S
    if mode == "lines":
        return LineDisplay(progress, stream), 1.0
    return None
