"""Command line of the Close email sync: `sync`, `backfill`, `status`.

    python -m pipelines.close_emails sync
    python -m pipelines.close_emails backfill --start 2024-01-01 --end 2024-02-01
    python -m pipelines.close_emails status [--json]
    python -m pipelines.close_emails status --check [--max-age HOURS]

`sync` and `backfill` run under a lock per pipeline and dataset (`--wait SECONDS`), record a
`sync_runs` row, show progress on stderr and print the summary (`--json`, `--quiet`,
`--verbose`); see `run_command.py`.

Configuration follows dlt's conventions (`.dlt/config.toml`, `.dlt/secrets.toml`, or
environment variables such as `SOURCES__CLOSE__API_KEY`). Exit codes: 0 success, 1 a run
that failed (one line on stderr saying what to do), 2 a usage error, 130 stopped by Ctrl-C
(SIGINT), 143 stopped by SIGTERM.
"""

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .environment import prepare
from .interrupts import describe_interrupt, stop_on_signals

prepare()  # before dlt reads any setting: `.dlt/` of a parent folder, telemetry off

from dlt.common.destination.exceptions import UnknownDestinationModule  # noqa: E402
from dlt.common.destination.reference import Destination  # noqa: E402
from dlt.common.exceptions import MissingDependencyException  # noqa: E402

from reports import DEFAULT_OUTPUT, ReportError, write_report  # noqa: E402

from . import organizations  # noqa: E402
from .freshness import add_check_options, check_freshness  # noqa: E402
from .logs import configure_logging  # noqa: E402
from .preflight import check_destination  # noqa: E402
from .run_command import execute, print_summary, progress_mode  # noqa: E402
from .runner import (  # noqa: E402
    describe_failure,
    make_pipeline,
    run_backfill,
    run_sync,
    status_report,
)
from .runs import history_status  # noqa: E402

COMMANDS = ("sync", "backfill", "status", "report")


def parse_date(value: str) -> datetime:
    """ISO 8601 date or datetime; a date is midnight UTC, a naive datetime is UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid date {value!r}: use ISO 8601, e.g. 2024-01-31 or 2024-01-31T12:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def destination_name(value: str) -> str:
    """A dlt destination name (or a named destination configured in dlt config), as given."""
    try:
        Destination.from_reference(value)
    except UnknownDestinationModule:
        raise argparse.ArgumentTypeError(
            f"unknown destination {value!r}: use a dlt destination name such as duckdb,"
            " postgres, sqlalchemy, motherduck, bigquery or snowflake"
        ) from None
    except MissingDependencyException as exc:
        raise argparse.ArgumentTypeError(
            f"destination {value!r} needs packages that are not installed: "
            f"{', '.join(exc.dependencies)}"
        ) from None
    return value


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
        type=destination_name,
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="any dlt destination: duckdb, postgres, sqlalchemy, motherduck, bigquery, ..."
        " (default: duckdb; credentials in DESTINATION__<NAME>__CREDENTIALS)",
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
    common.add_argument(
        "--organization",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="only this one of the organizations in sources.close.organizations",
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
    for runner in (sync, backfill):
        _add_run_options(runner)
    status = commands.add_parser(
        "status",
        parents=[common],
        help="cursors, last successful run and rows per table (no API call)",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of key: value")
    report = commands.add_parser(
        "report",
        parents=[common],
        help="write one self-contained HTML page from the warehouse (no API call)",
        description="Freshness and last runs, rows per table over time, daily email volume,"
        " reply rate by sequence, threads waiting for a reply. Needs no API key.",
    )
    report.add_argument(
        "--output", default=DEFAULT_OUTPUT, help=f"file to write (default: {DEFAULT_OUTPUT})"
    )
    add_check_options(status)
    return parser


def _add_run_options(command: argparse.ArgumentParser) -> None:
    """Options of `sync` and `backfill` for running them as scheduled jobs."""
    command.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="if another run of this pipeline and dataset holds the lock, wait this long",
    )
    command.add_argument("--json", action="store_true", help="print the summary as JSON")
    loudness = command.add_mutually_exclusive_group()
    loudness.add_argument("--quiet", action="store_true", help="print errors only")
    loudness.add_argument(
        "--verbose", action="store_true", help="debug logs on stderr (secrets redacted)"
    )


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"invalid seconds {value!r}: use a number >= 0")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.destination = getattr(args, "destination", "duckdb")
    args.dataset = getattr(args, "dataset", "close")
    args.pipeline_name = getattr(args, "pipeline_name", "close_emails")
    args.organization = getattr(args, "organization", None)
    if args.command == "backfill" and args.end <= args.start:
        parser.error("--end must be after --start")
    _find_project_dir()
    configure_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
    started = time.monotonic()
    if args.command == "report":
        return _report(args)
    try:
        with stop_on_signals():
            code, summary = _run_command(args, started)
    except (Exception, KeyboardInterrupt) as exc:  # dlt wraps what failed; say it in one line
        message, code = describe_interrupt(exc)
        if not code and isinstance(exc, Exception):
            message, code = describe_failure(exc) or "", 1
        if not message:
            raise
        print(f"error: {message}", file=sys.stderr)
        return code
    if summary is None:
        return code
    summary["duration_s"] = round(time.monotonic() - started, 2)
    if not args.quiet or args.json:
        print_summary(summary, args.json, _key_values)
    return code


def _run_function(args: argparse.Namespace, pipeline: Any) -> Any:
    """The run of `sync` or `backfill` as a function of its progress record."""
    include_bodies = False if args.no_bodies else None  # None: as configured
    if args.command == "sync":
        return lambda progress: run_sync(
            pipeline, include_bodies=include_bodies, reconcile=args.reconcile, progress=progress
        )
    return lambda progress: run_backfill(
        pipeline, args.start, args.end, include_bodies=include_bodies, progress=progress
    )


def _report(args: argparse.Namespace) -> int:
    """`report`: the dataset of every organization at once, so no organization applies."""
    try:
        pipeline = make_pipeline(args.pipeline_name, args.destination, args.dataset)
        path = write_report(pipeline, args.output)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # destination unreachable and the like: one line
        message = describe_failure(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(f"report: {path.resolve()}")
    return 0


def _run_organizations(
    args: argparse.Namespace, orgs: list[organizations.Organization], started: float
) -> int:
    """Every configured organization (or `--organization`'s): exit 1 if any failed."""
    report, errors = organizations.run_command(args, orgs)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if args.command != "status":
        report["duration_s"] = round(time.monotonic() - started, 2)
    as_json = getattr(args, "json", False)
    print(json.dumps(report, indent=2, default=str) if as_json else _key_values(report))
    return 1 if errors else 0


def _run_command(args: argparse.Namespace, started: float) -> tuple[int, dict[str, Any] | None]:
    """Runs `sync` or `backfill` (exit code and summary), or prints `status` (no summary)."""
    orgs = organizations.select(organizations.configured(), args.organization)
    if orgs:
        return _run_organizations(args, orgs, started), None
    pipeline = make_pipeline(args.pipeline_name, args.destination, args.dataset)
    check_destination(pipeline)  # before anything is extracted or written
    if args.command == "status":
        if args.check:
            return check_freshness(pipeline, args.max_age), None
        report = status_report(pipeline)
        report.update(history_status(pipeline))
        print(json.dumps(report, indent=2, default=str) if args.json else _key_values(report))
        return 0, None
    return execute(
        pipeline,
        args.command,
        _run_function(args, pipeline),
        describe_failure,
        wait_s=args.wait,
        mode=progress_mode(args.quiet, sys.stderr),
    )


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
