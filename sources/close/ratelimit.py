"""Close's rate limits, kept exactly by every thread of a run: one limiter per endpoint group.

Close counts requests per API key and endpoint group (and per organization, at 3x a key's
limit) in windows it announces in every answer (`RateLimit: limit=L, remaining=R,
reset=S`). The limiter

- never lets a request go to a group before the longest wait Close announced (a 429's
  `RateLimit` reset, `Retry-After` or `error.rate_reset`; a window reported spent), and
  only ever moves such a block later, never earlier: an answer that was in flight when a
  429 arrived cannot shorten its wait;
- paces requests evenly at just under `L / window` (the window being the longest `reset`
  seen), so a steady run stays under the limit without bursts at window starts;
- lets one request through to a group it knows nothing about yet, and the rest once the
  first answer has told the limit (a group without `RateLimit` headers is not paced);
- is released on every path (`release` in a `finally`), and wakes sleeping workers when
  the run is stopped.

Time comes from an injectable clock and the wait from an injectable sleep, so tests drive
it with a fake clock instead of sleeping.
"""

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .settings import PACING_SHARE, PROBE_POLL_S

_RATELIMIT_RE = re.compile(r"(limit|remaining|reset)\s*=\s*([0-9]+(?:\.[0-9]+)?)")


class Stopped(Exception):
    """The run was stopped (another worker failed, or the user interrupted it)."""


def parse_ratelimit_header(value: str | None) -> dict[str, float]:
    """Parses `limit=100, remaining=0, reset=1` (`,` or `;` separated) into a dict."""
    if not value:
        return {}
    return {key: float(number) for key, number in _RATELIMIT_RE.findall(value)}


@dataclass
class _Group:
    """What the limiter knows of one endpoint group."""

    blocked_until: float = 0.0  # no request before this (a 429's wait, a spent window)
    next_slot: float = 0.0  # pacing: the earliest moment of the next request
    interval: float | None = None  # seconds between requests; None until an answer told
    window_s: float = 0.0  # the longest `reset` seen: the length of Close's window
    in_flight: int = 0
    # when the last `limit` requests went out: the next waits for the oldest + a window
    sent: deque[float] = field(default_factory=lambda: deque(maxlen=1))


class RateLimiter:
    """Paces and blocks requests per endpoint group; shared by all threads of a run."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
        share: float = PACING_SHARE,
    ) -> None:
        self.stop = stop or threading.Event()
        self._clock = clock
        self._sleep = sleep or self._sleep_unless_stopped
        self._share = share
        self._lock = threading.Lock()
        self._groups: dict[str, _Group] = {}

    def acquire(self, group: str) -> float:
        """Blocks until a request to `group` may be sent; returns the seconds waited."""
        waited = 0.0
        while True:
            if self.stop.is_set():
                raise Stopped("stopped")
            with self._lock:
                delay = self._try_take(self._groups.setdefault(group, _Group()))
            if delay <= 0:
                return waited
            self._sleep(delay)
            waited += delay

    def _try_take(self, state: _Group) -> float:
        """Takes a slot (returns 0) or says how long to wait for one. Called under the lock."""
        now = self._clock()
        if state.interval is None and state.in_flight:
            return PROBE_POLL_S  # first request to the group still out: wait for its answer
        start = max(now, state.blocked_until, state.next_slot, self._window_opens(state))
        if start > now:
            return start - now
        state.in_flight += 1
        state.sent.append(now)
        # Slots keep to their timeline: a worker that wakes a little late (it waited for the
        # GIL, say) does not push every later slot back, or the pace would drift below the
        # limit by each delay. Up to half a slot of lateness is made up; after a block or an
        # idle spell the timeline restarts from now, so no burst follows.
        interval = state.interval or 0.0
        state.next_slot = max(state.next_slot, now - interval / 2) + interval
        return 0.0

    @staticmethod
    def _window_opens(state: _Group) -> float:
        """When a window's length will have passed since the oldest of the last `limit` sends.

        Catching up late slots must never put `limit + 1` requests into one window: with a
        small limit (4 a second, say) half a slot of catch-up would.
        """
        full = state.interval and len(state.sent) == state.sent.maxlen
        return state.sent[0] + state.window_s if full else 0.0

    def release(self, group: str, headers: Mapping[str, str] | None, throttled: bool) -> None:
        """Ends a request. A 200's `RateLimit` header teaches the pace; a spent window blocks.

        429s are handled by `block`; their headers describe the block, not the pace.
        """
        info = parse_ratelimit_header(headers.get("RateLimit")) if headers else {}
        with self._lock:
            state = self._groups.setdefault(group, _Group())
            state.in_flight = max(0, state.in_flight - 1)
            if throttled or headers is None:  # a 429, or no answer at all: nothing learned
                return
            if "limit" not in info or "reset" not in info:
                if state.interval is None:
                    state.interval = 0.0  # Close sends no limit for this group: no pacing
                return
            self._learn(state, limit=max(1, int(info["limit"])), reset=info["reset"])
            if info.get("remaining", 1) <= 0:
                self._block(state, self._spent_window_pause(state, info["reset"]))

    def _learn(self, state: _Group, limit: int, reset: float) -> None:
        """Sets the pace from an answer's limit and reset. The first answer's request (the
        probe) holds the first slot: the next one waits a slot after it, not after the
        answer, or one window could see `limit + 1` requests."""
        first = state.interval is None
        state.window_s = max(state.window_s, reset)
        state.interval = state.window_s / (limit * self._share)
        if state.sent.maxlen != limit:
            state.sent = deque(state.sent, maxlen=limit)
        if first and state.sent:
            state.next_slot = max(state.next_slot, state.sent[-1] + state.interval)

    @staticmethod
    def _spent_window_pause(state: _Group, reset: float) -> float:
        """How long to hold back after an answer that spent Close's window.

        At our pace the window's last request arrives just before the window ends (20 paced
        requests span nearly the whole window), but Close rounds `reset` up to a whole
        second, so waiting for it would idle a second at every such edge: measured, the walk
        then ran at 16 instead of 19.4 requests/s. One paced slot after the answer is enough
        for the window to turn; if it has not (another client spends the organization's
        budget), the 429 that follows blocks the group for exactly what Close announces.
        """
        return min(reset, state.interval) if state.interval else reset

    def announced(self) -> dict[str, float]:
        """Requests per second Close allows per endpoint group, as its answers announced."""
        with self._lock:
            return {
                group: state.sent.maxlen / state.window_s
                for group, state in self._groups.items()
                if state.interval is not None and state.window_s > 0 and state.sent.maxlen
            }

    def block(self, group: str, seconds: float) -> None:
        """No request to `group` until `seconds` from now (after a 429); keeps a later block."""
        with self._lock:
            self._block(self._groups.setdefault(group, _Group()), seconds)

    def _block(self, state: _Group, seconds: float) -> None:
        state.blocked_until = max(state.blocked_until, self._clock() + seconds)

    def admits(self, group: str) -> bool:
        """Whether a request may go to `group` right now (no block has begun since its slot)."""
        with self._lock:
            return self._clock() >= self._groups.get(group, _Group()).blocked_until

    def blocked_until(self, group: str) -> float:
        """The clock time before which no request goes to `group` (for tests and progress)."""
        with self._lock:
            return self._groups.get(group, _Group()).blocked_until

    def _sleep_unless_stopped(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped("stopped")
