"""Close's timestamps: parsing its ISO values and RFC 2822 envelope dates, formatting filters."""

import email.utils
from datetime import UTC, datetime
from typing import Any

import pendulum
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

# The form nearly every mail client writes; arrow parses it in C, a hundred times faster
# than the mail parser (which a sync would otherwise call for every email).
RFC2822_FORMAT = "%a, %d %b %Y %H:%M:%S %z"


def parse_timestamp(value: Any) -> datetime | None:
    """Parses Close's ISO timestamps (with or without microseconds, `Z`, offset or naive UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(value)  # fast path, covers Close's own output
        except ValueError:
            parsed = pendulum.parse(value)  # type: ignore[assignment]
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_rfc2822(value: Any) -> datetime | None:
    """Parses an envelope `date` header (RFC 2822, maybe with a trailing comment); None if junk.

    The standard library's mail parser is used rather than pendulum: it is the parser built
    for this header and tolerates the `(UTC)` / `(added by …)` comments Close passes through.
    """
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def rfc2822_column(values: list[Any]) -> pa.Array:
    """Envelope `date` headers as a UTC timestamp column, as `parse_rfc2822` parses each:
    the usual form by arrow, any other form (comments, zone names, no weekday) by it."""
    strings = pa.array([v if isinstance(v, str) and v else None for v in values], pa.string())
    parsed = pc.strptime(strings, format=RFC2822_FORMAT, unit="us", error_is_null=True)
    if parsed.null_count == strings.null_count:
        return parsed
    fixed = [p if p is not None else parse_rfc2822(v)
             for p, v in zip(parsed.to_pylist(), values, strict=True)]  # fmt: skip
    return pa.array(fixed, parsed.type)


def format_timestamp(value: datetime) -> str:
    """Formats a filter value the way Close prints timestamps (UTC, `+00:00`)."""
    return value.astimezone(UTC).isoformat()
