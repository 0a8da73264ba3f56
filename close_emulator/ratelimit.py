"""Close-style rate limiting: fixed windows per (API key, endpoint group), plus an organization
bucket per endpoint group shared by all keys at three times the key rate."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

ORG_FACTOR = 3
UNLIMITED = 1_000_000


@dataclass
class Verdict:
    """The outcome of one request against the buckets it counts in."""

    allowed: bool
    limit: int
    remaining: int
    reset: float  # seconds until the window of the reported bucket ends
    limit_type: str  # "key" or "organization"

    def header(self, fractional: bool) -> str:
        """The `RateLimit` header value."""
        reset = format_reset(self.reset, fractional)
        return f"limit={self.limit}, remaining={self.remaining}, reset={reset}"

    def retry_after(self) -> str:
        """The `Retry-After` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(self.reset)))


def format_reset(seconds: float, fractional: bool) -> str:
    """Seconds until reset as Close prints them: whole seconds (at least 1) or fractional."""
    return f"{seconds:.3f}" if fractional else str(max(1, math.ceil(seconds)))


class RateLimiter:
    """Fixed-window counters keyed by (key, group) and by group for the organization."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str | None, str], tuple[int, int]] = {}  # -> (window, count)

    def check(
        self, key: str | None, group: str, rate: float, window: float, consume: bool = True
    ) -> Verdict:
        """Count one request (unless `consume` is false) and report the tightest bucket.

        `rate` is requests per second per key; 0 disables limiting.
        """
        if rate <= 0:
            return Verdict(True, UNLIMITED, UNLIMITED, window, "key")
        now = time.monotonic()
        index = int(now // window)
        reset = (index + 1) * window - now
        key_limit = max(1, round(rate * window))
        buckets = (
            ((key, group), key_limit, "key"),
            ((None, group), key_limit * ORG_FACTOR, "organization"),
        )
        with self._lock:
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if v[0] == index}
            used = [self._used(bucket, index) for bucket, _, _ in buckets]
            for (_, limit, kind), count in zip(buckets, used, strict=True):
                if count >= limit:
                    return Verdict(False, limit, 0, reset, kind)
            if consume:
                for (bucket, _, _), count in zip(buckets, used, strict=True):
                    self._counts[bucket] = (index, count + 1)
                used = [count + 1 for count in used]
        # report the bucket closest to exhaustion
        remaining = [
            (limit - count) / limit for (_, limit, _), count in zip(buckets, used, strict=True)
        ]
        pick = 0 if remaining[0] <= remaining[1] else 1
        _, limit, kind = buckets[pick]
        return Verdict(True, limit, max(0, limit - used[pick]), reset, kind)

    def _used(self, bucket: tuple[str | None, str], index: int) -> int:
        window, count = self._counts.get(bucket, (index, 0))
        return count if window == index else 0
