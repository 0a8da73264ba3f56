"""Fault injection: latency, 5xx errors, dropped/stalled/truncated responses, 429 storms and
page drift. Random faults draw from a seeded `random.Random`, so runs are reproducible."""

from __future__ import annotations

import copy
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "path_prefix": None,  # faults apply only to API paths starting with this
    "latency_ms": 0.0,
    "jitter_ms": 0.0,
    "error_rate": 0.0,
    "error_codes": [500, 502, 503, 504],
    "html_error_fraction": 0.0,
    "drop_rate": 0.0,
    "stall_rate": 0.0,
    "stall_seconds": 30.0,
    "truncate_rate": 0.0,
    "error_next": 0,
    "error_status": 503,
    "error_html": False,  # error_next answers with a proxy's HTML page
    "invalid_json_next": 0,  # 200 with a full-length body that is not JSON
    "empty_next": 0,  # 200 with an empty body
    "unauthorized_after": 0,  # 0 = off; after N more API requests every answer is 401
    "events_shuffle": False,  # event pages in random order (not newest first)
    "events_consolidate": False,  # one event per object and action within a page
    "drop_next": 0,
    "stall_next": 0,
    "truncate_next": 0,
    "storm_next": 0,
    "storm_reset_seconds": 1.0,
    "storm_ratelimit_header": True,
    "storm_retry_after": True,
    "storm_body_rate_reset": True,
    "storm_period_s": 0.0,  # periodic storm: every period, the first storm_duration_s are 429s
    "storm_duration_s": 0.0,
    "drift_after_page": 0,  # 0 = off
    "drift_insert": 0,
    "drift_delete": 0,
    "drift_delete_served": False,  # delete already-served rows instead (shifts later pages up)
}
_DRIFT_KEYS = ("drift_after_page", "drift_insert", "drift_delete", "drift_delete_served")


@dataclass
class Decision:
    """What to do to one API request."""

    delay: float = 0.0  # seconds to sleep first
    kind: str | None = None  # None, "drop", "stall", "error", "truncate", "storm", "invalid",
    # "empty" or "unauthorized"
    status: int = 0  # for "error"
    html: bool = False  # for "error": a proxy's HTML page instead of JSON
    seconds: float = 0.0  # stall duration, or the storm's reset time
    ratelimit_header: bool = True  # storm switches
    retry_after: bool = True
    body_rate_reset: bool = True


class Faults:
    """The current fault settings (readable as attributes) and their runtime state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    def reset(self) -> None:
        """Back to no faults at all."""
        with self._lock:
            self._values = copy.deepcopy(DEFAULTS)
            self._rng = random.Random(0)
            self._storm_last: float | None = None
            self._storm_epoch = time.monotonic()
            self._drift_pages = 0
            self._drift_done: dict[str, list[str]] | None = None
            self._requests_until_revoked = 0

    def set(self, **kwargs: Any) -> None:
        """Change some settings; unknown keys raise ValueError. Setting a drift key re-arms it."""
        unknown = set(kwargs) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        with self._lock:
            for key, value in kwargs.items():
                self._values[key] = _coerce(key, value)
            period, duration = self._values["storm_period_s"], self._values["storm_duration_s"]
            if period > 0 and duration >= period:
                raise ValueError("storm_duration_s must be shorter than storm_period_s")
            if "seed" in kwargs:
                self._rng = random.Random(self._values["seed"])
            if "storm_period_s" in kwargs or "storm_duration_s" in kwargs:
                self._storm_epoch = time.monotonic()  # the first storm starts now
            if "unauthorized_after" in kwargs:
                self._requests_until_revoked = self._values["unauthorized_after"]
            if any(key in kwargs for key in _DRIFT_KEYS):
                self._drift_pages = 0
                self._drift_done = None

    def as_dict(self) -> dict[str, Any]:
        """Settings plus state: `drift_pages_seen` and `drift_done` (inserted/deleted ids)."""
        with self._lock:
            return {
                **copy.deepcopy(self._values),
                "drift_pages_seen": self._drift_pages,
                "drift_done": copy.deepcopy(self._drift_done),
            }

    def applies(self, path: str) -> bool:
        """Whether faults apply to this API path."""
        prefix = self._values["path_prefix"]
        return not prefix or path.startswith(prefix)

    def decide(self) -> Decision:
        """Pick the fault (at most one, plus latency) for the next API request."""
        with self._lock:
            v = self._values
            rng = self._rng
            delay = v["latency_ms"] / 1000
            if v["jitter_ms"] > 0:
                delay += rng.uniform(0, v["jitter_ms"]) / 1000
            decision = Decision(delay=delay)
            now = time.monotonic()
            storm_early = (
                self._storm_last is not None and now - self._storm_last < v["storm_reset_seconds"]
            )
            if v["storm_next"] > 0 or storm_early:
                if not storm_early:
                    v["storm_next"] -= 1
                self._storm_last = now
                decision.kind = "storm"
                decision.seconds = v["storm_reset_seconds"]
                decision.ratelimit_header = v["storm_ratelimit_header"]
                decision.retry_after = v["storm_retry_after"]
                decision.body_rate_reset = v["storm_body_rate_reset"]
            elif self._revoked():
                decision.kind = "unauthorized"
            elif self._take("error_next"):
                decision.kind, decision.status = "error", v["error_status"]
                decision.html = v["error_html"]
            elif self._take("drop_next"):
                decision.kind = "drop"
            elif self._take("stall_next"):
                decision.kind, decision.seconds = "stall", v["stall_seconds"]
            elif self._take("truncate_next"):
                decision.kind = "truncate"
            elif self._take("invalid_json_next"):
                decision.kind = "invalid"
            elif self._take("empty_next"):
                decision.kind = "empty"
            elif self._roll("drop_rate"):
                decision.kind = "drop"
            elif self._roll("stall_rate"):
                decision.kind, decision.seconds = "stall", v["stall_seconds"]
            elif self._roll("error_rate"):
                decision.kind = "error"
                decision.status = rng.choice(v["error_codes"])
                decision.html = self._roll("html_error_fraction")
            elif self._roll("truncate_rate"):
                decision.kind = "truncate"
            return decision

    def periodic_storm(self) -> Decision | None:
        """A storm 429 if a periodic storm is on now, announcing the wait until it ends.

        Periods start when the storm keys were last set; in each, the first
        `storm_duration_s` seconds are storm. Checked when the answer is made (after any
        latency), so the announced wait is counted from when the client receives it.
        """
        with self._lock:
            v = self._values
            period, duration = v["storm_period_s"], v["storm_duration_s"]
            if period <= 0 or duration <= 0:
                return None
            phase = (time.monotonic() - self._storm_epoch) % period
            if phase >= duration:
                return None
            return Decision(
                kind="storm",
                seconds=duration - phase,
                ratelimit_header=v["storm_ratelimit_header"],
                retry_after=v["storm_retry_after"],
                body_rate_reset=v["storm_body_rate_reset"],
            )

    def _revoked(self) -> bool:
        """Counts down `unauthorized_after`; True once the key counts as revoked."""
        if not self._values["unauthorized_after"]:
            return False
        if self._requests_until_revoked > 0:
            self._requests_until_revoked -= 1
            return False
        return True

    def shape_events(self, rows: list[Any], object_action: Any) -> list[Any]:
        """An event page as the faults want it: consolidated (the newest event per object and
        action, as Close merges rapid updates) and/or shuffled. `object_action(row)` keys."""
        with self._lock:
            if self._values["events_consolidate"]:
                seen: set[Any] = set()
                kept = []
                for row in rows:
                    if object_action(row) not in seen:
                        seen.add(object_action(row))
                        kept.append(row)
                rows = kept
            if self._values["events_shuffle"]:
                rows = list(rows)
                self._rng.shuffle(rows)
            return rows

    def _take(self, key: str) -> bool:
        if self._values[key] > 0:
            self._values[key] -= 1
            return True
        return False

    def _roll(self, key: str) -> bool:
        rate = self._values[key]
        return rate > 0 and self._rng.random() < rate

    def drift_due(self) -> bool:
        """Count one served, date-filtered email list page; True once, after the P-th page."""
        with self._lock:
            if not self._values["drift_after_page"] or self._drift_done is not None:
                return False
            self._drift_pages += 1
            if self._drift_pages < self._values["drift_after_page"]:
                return False
            self._drift_done = {"inserted": [], "deleted": []}
            return True

    def record_drift(self, inserted: list[str], deleted: list[str]) -> None:
        """Remember what the drift inserted and deleted (shown by `as_dict`)."""
        with self._lock:
            self._drift_done = {"inserted": inserted, "deleted": deleted}

    def drift_plan(self) -> tuple[int, int, bool]:
        """(insert count, delete count, delete served rows) of the armed drift."""
        v = self._values
        return v["drift_insert"], v["drift_delete"], v["drift_delete_served"]


def _coerce(key: str, value: Any) -> Any:
    default = DEFAULTS[key]
    if key == "path_prefix":
        return None if value in (None, "") else str(value)
    if key == "error_codes":
        codes = [int(code) for code in value]
        if not codes:
            raise ValueError("error_codes must not be empty")
        return codes
    if isinstance(default, bool):
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    number = type(default)(value)
    if number < 0:
        raise ValueError(f"{key} must not be negative")
    return number
