"""Command line of the Close email sync: `sync`, `backfill`, `status`.

    python -m pipelines.close_emails sync
    python -m pipelines.close_emails backfill --start 2024-01-01 --end 2024-02-01
    python -m pipelines.close_emails status [--json]

Configuration follows dlt's conventions (`.dlt/config.toml`, `.dlt/secrets.toml`, or
environment variables such as `SOURCES__CLOSE__API_KEY`). Exit codes: 0 success, 1 a run
that failed (one line on stderr saying what to do), 2 a usage error, 130 stopped by Ctrl-C
(SIGINT), 143 stopped by SIGTERM.
"""

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .environment import prepare
from .interrupts import describe_interrupt, stop_on_signals

prepare()  # before dlt reads any setting: `.dlt/` of a parent folder, telemetry off

from .preflight import check_destination  # noqa: E402
from .runner import (  # noqa: E402
    describe_failure,
    make_pipeline,
    run_backfill,
    run_sync,
    status_report,
)

COMMANDS = ("sync", "backfill", "status")


def parse_date(value: str) -> datetime:
    """ISO 8601 date or datetime; a date is midnight UTC, a naive datetime is UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid date {value!r}: use ISO 8601, e.g. 2024-01-31 or 2024-01-31T12:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _name(value: str) -> str:
    """A dataset or pipeline name: not empty (dlt would silently pick a default instead)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS so that options given before the command are not overwritten by the
    # sub-command's defaults; the real defaults are filled in after parsing.
    common.add_argument(
        "--destination",
        choices=("duckdb", "postgres"),
        default=argparse.SUPPRESS,
        help="where to load (default: duckdb)",
    )
    common.add_argument(
        "--dataset",
        default=argparse.SUPPRESS,
        type=_name,
        help="dataset (schema) name (default: close)",
    )
    common.add_argument(
        "--pipeline-name",
        default=argparse.SUPPRESS,
        type=_name,
        help="dlt pipeline name; keeps its own state (default: close_emails)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.close_emails",
        description="Keep a DuckDB or PostgreSQL dataset in step with Close email activities.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sync = commands.add_parser(
        "sync",
        parents=[common],
        help="nightly job: load everything new, changed or deleted since the last run",
        description="First run loads the whole history; later runs load what was created,"
        " changed or deleted since the last successful run (event log).",
    )
    sync.add_argument(
        "--no-bodies", action="store_true", help="leave body columns NULL, do not download bodies"
    )
    sync.add_argument(
        "--reconcile",
        action="store_true",
        help="compare every email id with Close now (finds deletions the event log lost)",
    )
    backfill = commands.add_parser(
        "backfill",
        parents=[common],
        help="make the dataset equal Close for an activity_at range",
        description="Re-reads emails whose activity_at lies in [start, end), loads what Close"
        " has and removes what it no longer has. Resumes after a crash. Leaves the nightly"
        " cursors untouched.",
    )
    backfill.add_argument("--start", required=True, type=parse_date, help="ISO date or datetime")
    backfill.add_argument("--end", required=True, type=parse_date, help="ISO date or datetime")
    backfill.add_argument(
        "--no-bodies", action="store_true", help="leave body columns NULL, do not download bodies"
    )
    status = commands.add_parser(
        "status",
        parents=[common],
        help="cursors, last successful run and rows per table (no API call)",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of key: value")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.destination = getattr(args, "destination", "duckdb")
    args.dataset = getattr(args, "dataset", "close")
    args.pipeline_name = getattr(args, "pipeline_name", "close_emails")
    if args.command == "backfill" and args.end <= args.start:
        parser.error("--end must be after --start")
    _find_project_dir()
    logging.basicConfig(
        level=os.environ.get("CLOSE_SYNC_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    started = time.monotonic()
    try:
        with stop_on_signals():
            summary = _run_command(args)
    except (Exception, KeyboardInterrupt) as exc:  # dlt wraps what failed; say it in one line
        message, code = describe_interrupt(exc)
        if not code and isinstance(exc, Exception):
            message, code = describe_failure(exc) or "", 1
        if not message:
            raise
        print(f"error: {message}", file=sys.stderr)
        return code
    if summary is None:
        return 0
    summary["duration_s"] = round(time.monotonic() - started, 2)
    print(_key_values(summary))
    return 0


def _run_command(args: argparse.Namespace) -> dict[str, Any] | None:
    """Runs `sync` or `backfill` and returns its summary, or prints `status` (None)."""
    pipeline = make_pipeline(args.pipeline_name, args.destination, args.dataset)
    check_destination(pipeline)  # before anything is extracted or written
    if args.command == "status":
        report = status_report(pipeline)
        print(json.dumps(report, indent=2, default=str) if args.json else _key_values(report))
        return None
    include_bodies = False if args.no_bodies else None  # None: as configured
    if args.command == "sync":
        return run_sync(pipeline, include_bodies=include_bodies, reconcile=args.reconcile)
    return run_backfill(pipeline, args.start, args.end, include_bodies=include_bodies)


def _key_values(report: dict[str, Any], prefix: str = "") -> str:
    lines = []
    for key, value in report.items():
        if isinstance(value, dict):
            lines.append(_key_values(value, f"{prefix}{key}."))
        else:
            lines.append(f"{prefix}{key}: {'' if value is None else value}")
    return "\n".join(line for line in lines if line)


def _find_project_dir() -> None:
    """Lets the command run from any folder of the repository: finds the nearest `.dlt/`.

    Done once more at import (`prepare()` above), since dlt reads the folder when its first
    setting is made; here it only matters when `main` runs in a process that changed folders.
    """
    prepare()


if __name__ == "__main__":
    sys.exit(main())
