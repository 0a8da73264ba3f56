"""Splits a backfill's `[start, end)` into partitions, each with its own pipeline and staging.

A partition is one Airflow task of the backfill DAG. It is named after its range, so that a
retried task, or the same DAG triggered again with the same range, finds its pipeline state
(the backfill's committed chunks) and resumes, while any other range starts afresh.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sources.close.timestamps import parse_timestamp


@dataclass(frozen=True)
class Partition:
    """One `[start, end)` slice of a backfill, and the names that keep it apart from others."""

    start: datetime
    end: datetime
    pipeline_name: str  # dlt pipeline: state, cursors and local folder of its own
    staging_layout: str  # dlt `staging_dataset_name_layout`: a staging dataset of its own

    def as_kwargs(self) -> dict[str, str]:
        """The partition as plain strings, as Airflow passes task arguments (JSON)."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "pipeline_name": self.pipeline_name,
            "staging_layout": self.staging_layout,
        }


def split_range(start: datetime, end: datetime, parts: int) -> list[tuple[datetime, datetime]]:
    """`parts` back-to-back half-open ranges covering `[start, end)`, cut at whole seconds.

    Returns fewer ranges when `[start, end)` has fewer seconds than `parts`; raises
    ValueError for an empty range or `parts < 1`.
    """
    if parts < 1:
        raise ValueError(f"partitions must be at least 1, not {parts}")
    if end <= start:
        raise ValueError(f"the end {end.isoformat()} must be after the start {start.isoformat()}")
    seconds = int((end - start).total_seconds())
    parts = max(1, min(parts, seconds))
    cuts = [start + timedelta(seconds=seconds * i // parts) for i in range(1, parts)]
    bounds = [start, *cuts, end]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def partitions(base_name: str, start: str, end: str, parts: int) -> list[Partition]:
    """The partitions of a backfill of `[start, end)` (ISO dates or datetimes, UTC if naive).

    Each gets the pipeline name `<base_name>_<start>_<end>` and the staging layout
    `%s_staging_<start>_<end>`: partitions run at the same time, and two loads sharing dlt's
    default staging dataset (`<dataset>_staging`) would overwrite each other's staged rows.
    """
    first, last = _moment(start, "start"), _moment(end, "end")
    found = []
    for lo, hi in split_range(first, last, parts):
        slug = f"{_slug(lo)}_{_slug(hi)}"
        found.append(Partition(lo, hi, f"{base_name}_{slug}", f"%s_staging_{slug}"))
    return found


def _moment(value: str, name: str) -> datetime:
    """`value` as an aware UTC datetime; ValueError naming the parameter if it is not ISO."""
    try:
        parsed = parse_timestamp(value)
    except (ValueError, TypeError):  # pendulum's ParserError is a ValueError
        parsed = None
    if parsed is None:
        raise ValueError(
            f"backfill {name} {value!r} is not an ISO 8601 date or datetime, e.g. 2024-01-31"
        )
    return parsed.astimezone(UTC)


def _slug(moment: datetime) -> str:
    """`20240131t000000`: a timestamp as dlt names it (lower case, no separators)."""
    return moment.strftime("%Y%m%dt%H%M%S")
