"""Did a client keep the waits a 429 announced? Counted from the emulator's request log."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any


def announced_waits(entries: Iterable[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """The open intervals (answered, answered + wait) of the 429s among `entries`, merged
    where they overlap, sorted."""
    spans = sorted(
        (entry["answered"], entry["answered"] + entry["wait"])
        for entry in entries
        if entry["status"] == 429 and entry.get("wait") and entry.get("answered") is not None
    )
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def requests_inside_waits(log: Iterable[Mapping[str, Any]]) -> int:
    """How many requests arrived, in the same endpoint group, after a 429 was answered and
    before the wait it announced (its longest signal: `wait`) had passed.

    A request that arrived before the 429 was answered was already in flight when the client
    could have seen it and does not count. Entries need `time` (arrival), `answered`,
    `status`, `group` and, on 429s, `wait` — the emulator's request log.
    """
    by_group: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for entry in log:
        by_group[entry["group"]].append(entry)
    inside = 0
    for entries in by_group.values():
        waits = announced_waits(entries)
        starts = [start for start, _ in waits]
        for entry in entries:
            i = bisect.bisect_left(starts, entry["time"]) - 1  # the last wait starting before it
            if i >= 0 and entry["time"] < waits[i][1]:
                inside += 1
    return inside


def client_requests_inside_waits(trace: Iterable[Mapping[str, Any]]) -> int:
    """The same count from the client's own trace (`sources/close/trace.py`): requests sent
    after this client had read a 429 of their group and before its wait had passed. Exact
    where the emulator's count is not: a request the client sent just before the 429 reached
    it may arrive after the 429 was answered (seen on a loaded machine: up to 15 ms after)."""
    return requests_inside_waits(
        {**line, "time": line["sent"], "answered": line["seen"]} for line in trace
    )


def storm_bound_s(
    log: Iterable[Mapping[str, Any]], rate: float, period_s: float, duration_s: float
) -> float:
    """The shortest time the requests that were answered (not 429) could take under a periodic
    storm: groups are limited separately, each to (P - D) / P x rate requests per second, so
    the busiest group sets the bound."""
    needed: dict[str, int] = defaultdict(int)
    for entry in log:
        if entry["status"] != 429:
            needed[entry["group"]] += 1
    allowance = (period_s - duration_s) / period_s * rate
    return max(needed.values(), default=0) / allowance if allowance > 0 else math.inf
