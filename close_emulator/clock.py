"""The emulator clock and the datetime formats Close uses.

All timestamps are kept as integer epoch microseconds (UTC). The clock is real time plus an
adjustable offset, so tests can move "now" forward without sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000
DAY_US = 86_400 * US
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Clock:
    """Real time shifted by an offset in seconds."""

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        """The current offset from real time, in seconds."""
        return self._offset

    def now(self) -> datetime:
        """The current emulator time as an aware UTC datetime."""
        return from_us(self.now_us())

    def now_us(self) -> int:
        """The current emulator time in epoch microseconds."""
        return int((time.time() + self._offset) * US)

    def epoch(self) -> float:
        """The current emulator time in epoch seconds."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, if negative) by `seconds`."""
        with self._lock:
            self._offset += seconds

    def set_offset(self, seconds: float) -> None:
        """Set the offset from real time, in seconds."""
        with self._lock:
            self._offset = seconds


def from_us(us: int) -> datetime:
    """Epoch microseconds to an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


def to_us(dt: datetime) -> int:
    """An aware datetime to epoch microseconds."""
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def fmt(us: int | None) -> str | None:
    """Close's output format: `2013-02-08T05:02:42.050000+00:00`, no fraction when zero."""
    return None if us is None else from_us(us).isoformat()


def fmt_naive(us: int) -> str:
    """The event log's top-level format: like `fmt` but without the offset."""
    return from_us(us).replace(tzinfo=None).isoformat()


def truncate_ms(us: int) -> int:
    """Drop sub-millisecond digits, as Close stores timestamps with millisecond precision."""
    return us - us % 1000


def parse_iso(value: str) -> datetime:
    """Parse an ISO 8601 datetime with an offset (used for admin input); naive means UTC."""
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_filter(value: str, tz_offset_hours: float = 0.0) -> int:
    """Parse a date filter value the way Close does; return epoch microseconds.

    Accepts a date (midnight), a naive datetime (read in the `X-TZ-Offset` zone) or a datetime
    with `Z` or `+HH:MM`. Raises ValueError on anything else.
    """
    value = value.strip()
    if not value or value[0] not in "0123456789" or len(value) < 10 or value[4] != "-":
        raise ValueError(value)
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone(timedelta(hours=tz_offset_hours)))
    return to_us(dt)


def rfc2822(us: int, offset_minutes: int = 0, comment: bool = False) -> str:
    """An RFC 2822 date as in `envelope.date`, e.g. `Fri, 08 Feb 2013 05:03:15 +0000`."""
    t = from_us(us) + timedelta(minutes=offset_minutes)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = (
        f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} {sign}{hours:02d}{minutes:02d}"
    )
    return text + " (UTC)" if comment else text
