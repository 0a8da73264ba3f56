"""`status --check`: is last night's data complete? Exit 0 or 1 with one line, for monitors.

Fresh means: the last successful `sync` (in `sync_runs`) finished less than `--max-age`
hours ago, and Close's event log (30 days of events) still covers the time since its event
cursor, so that the next sync can still pick up every change by the log. Reads only the
destination: no API key, no request to Close.
"""

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.pipeline.state_sync import load_pipeline_state_from_destination

from pipelines.runs import last_success
from sources.close.settings import DEFAULT_EVENT_RETENTION_DAYS
from sources.close.timestamps import parse_timestamp

DEFAULT_MAX_AGE_HOURS = 26.0


def add_check_options(status: argparse.ArgumentParser) -> None:
    """`--check` and `--max-age HOURS` on the `status` command."""
    status.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if the data is fresh, else 1 with one line saying why (for monitors)",
    )
    status.add_argument(
        "--max-age",
        type=_hours,
        default=DEFAULT_MAX_AGE_HOURS,
        metavar="HOURS",
        help=f"with --check: the oldest acceptable last successful sync (default {DEFAULT_MAX_AGE_HOURS:g})",
    )


def _hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        hours = 0.0
    if hours <= 0:
        raise argparse.ArgumentTypeError(f"invalid hours {value!r}: use a number > 0")
    return hours


def check_freshness(
    pipeline: dlt.Pipeline, max_age_hours: float, now: datetime | None = None
) -> int:
    """Prints one line (stdout when fresh, stderr when not) and returns the exit code."""
    problem, line = freshness(pipeline, max_age_hours, now or datetime.now(UTC))
    print(line, file=sys.stderr if problem else sys.stdout)
    return 1 if problem else 0


def freshness(pipeline: dlt.Pipeline, max_age_hours: float, now: datetime) -> tuple[bool, str]:
    """(whether there is a problem, the line that says so or that all is well)."""
    last = last_success(pipeline, "sync")
    if last is None:
        return True, (
            f"not fresh: no successful sync of {pipeline.pipeline_name} recorded in"
            f" {pipeline.dataset_name}.sync_runs; run sync"
        )
    finished = last["finished_at"].astimezone(UTC)
    age = now - finished
    if age >= timedelta(hours=max_age_hours):
        return True, (
            f"stale: the last successful sync ({last['run_id']}) finished {_hours_text(age)} ago,"
            f" more than --max-age {max_age_hours:g} h; check the scheduler and the failed runs"
            " in sync_runs"
        )
    gap = event_log_gap(pipeline, now)
    if gap:
        return True, gap
    return False, (
        f"fresh: the last successful sync ({last['run_id']}) finished {_hours_text(age)} ago"
        f" (limit {max_age_hours:g} h) and the event log covers the time since"
    )


def event_log_gap(pipeline: dlt.Pipeline, now: datetime) -> str | None:
    """Why the event log no longer covers the time since the event cursor, or None."""
    with pipeline.destination_client() as client:
        state: Any = load_pipeline_state_from_destination(pipeline.pipeline_name, client)  # type: ignore[arg-type]
    source_state = (state or {}).get("sources", {}).get("close", {})
    cursor = parse_timestamp(source_state.get("event_cursor"))
    retention = float(
        dlt.config.get("sources.close.event_retention_days") or DEFAULT_EVENT_RETENTION_DAYS
    )
    if cursor is None:
        return "not fresh: no event-log cursor stored yet; run sync"
    if now - cursor >= timedelta(days=retention):
        return (
            f"event log gap: the event cursor {cursor.isoformat()} is older than Close's"
            f" {retention:g}-day event retention; the next sync reconciles by id"
        )
    if source_state.get("event_log_reached_cursor") is False:
        return (
            "event log gap: Close's event log no longer reached the last event cursor;"
            " the next sync reconciles by id"
        )
    return None


def _hours_text(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:.1f} h"
