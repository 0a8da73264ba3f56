"""Which `date_created` ranges a walk has loaded: half-open intervals kept in the source state.

A first sync or a backfill walks many ranges at once and splits them as it goes, so its
progress is not one cursor but a set of loaded intervals. Each chunk commits the set with
its data; a rerun walks only the gaps. The nightly cursor is the end of the loaded prefix.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .timestamps import format_timestamp, parse_timestamp

Interval = tuple[datetime, datetime]  # [lo, hi)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint intervals covering the same points; touching ones joined."""
    merged: list[Interval] = []
    for lo, hi in sorted(i for i in intervals if i[0] < i[1]):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def gaps(span: Interval, done: Iterable[Interval]) -> list[Interval]:
    """The parts of `span` that no interval of `done` covers, oldest first."""
    lo, hi = span
    missing: list[Interval] = []
    for done_lo, done_hi in merge(done):
        if done_hi <= lo or done_lo >= hi:
            continue
        if done_lo > lo:
            missing.append((lo, done_lo))
        lo = max(lo, done_hi)
    if lo < hi:
        missing.append((lo, hi))
    return missing


def loaded_until(done: Iterable[Interval], start: datetime) -> datetime | None:
    """The end of the loaded prefix that begins at or before `start`, or None."""
    merged = merge(done)
    if merged and merged[0][0] <= start:
        return merged[0][1]
    return None


def to_state(intervals: Iterable[Interval]) -> list[list[str]]:
    return [[format_timestamp(lo), format_timestamp(hi)] for lo, hi in merge(intervals)]


def from_state(value: Any) -> list[Interval]:
    """Intervals from the state (ISO string pairs); anything unreadable counts as not loaded."""
    intervals = []
    for pair in value or []:
        lo, hi = parse_timestamp(pair[0]), parse_timestamp(pair[1])
        if lo is not None and hi is not None:
            intervals.append((lo, hi))
    return merge(intervals)
