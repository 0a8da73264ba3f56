"""Backfill partitions: contiguous, disjoint, named after their range (no Airflow needed)."""

from datetime import UTC, datetime

import pytest

from dags.partitions import partitions, split_range


def test_partitions_cover_the_range_back_to_back_with_distinct_names() -> None:
    found = partitions("close_emails_backfill", "2024-01-01", "2024-03-01T00:00:00Z", 3)
    assert [p.start for p in found][0] == datetime(2024, 1, 1, tzinfo=UTC)
    assert found[-1].end == datetime(2024, 3, 1, tzinfo=UTC)
    assert all(a.end == b.start for a, b in zip(found, found[1:], strict=False))
    assert len({p.pipeline_name for p in found}) == 3
    assert len({p.staging_layout for p in found}) == 3
    assert found[0].pipeline_name == "close_emails_backfill_20240101t000000_20240121t000000"
    assert found[0].staging_layout == "%s_staging_20240101t000000_20240121t000000"
    assert found[0].as_kwargs()["start"] == "2024-01-01T00:00:00+00:00"


def test_the_same_range_gives_the_same_names_so_a_rerun_resumes() -> None:
    first = partitions("b", "2024-01-01", "2024-02-01", 2)
    again = partitions("b", "2024-01-01T00:00:00+00:00", "2024-02-01T01:00:00+01:00", 2)
    assert first == again


def test_a_short_range_gets_at_most_one_partition_per_second() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert len(split_range(start, start.replace(second=2), 8)) == 2


@pytest.mark.parametrize(
    ("start", "end", "parts", "message"),
    [
        ("2024-02-01", "2024-01-01", 2, "must be after the start"),
        ("yesterday", "2024-01-01", 2, "backfill start 'yesterday' is not an ISO 8601"),
        ("2024-01-01", "2024-02-01", 0, "partitions must be at least 1"),
    ],
)
def test_bad_params_are_one_line_naming_the_param(
    start: str, end: str, parts: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        partitions("b", start, end, parts)
