"""One `sync` or `backfill` as an operation: run lock, `sync_runs` row, progress, summary.

The command line hands a started run here: the lock is taken before anything is loaded or
requested, the run's row is written whether it succeeds or fails (while the lock is still
held, so that the history is in run order), and the summary goes to stdout as `key: value`
lines or JSON.
"""

import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

import dlt
from dlt.pipeline.state_sync import load_pipeline_state_from_destination

from pipelines.run_display import RunProgress, Ticker, make_display
from pipelines.runlock import RunLocked, acquire, lock_for, this_process
from pipelines.runs import RunRecord, new_run_id, record_run
from sources.close import walk_cursor

logger = logging.getLogger(__name__)

RunFunction = Callable[[RunProgress], dict[str, Any]]
Describe = Callable[[BaseException], str | None]


def progress_mode(quiet: bool, stream: TextIO) -> str:
    """`live` on a terminal, `lines` otherwise, `off` with `--quiet`."""
    if quiet:
        return "off"
    return "live" if stream.isatty() else "lines"


def execute(
    pipeline: dlt.Pipeline,
    command: str,
    run: RunFunction,
    describe_failure: Describe,
    wait_s: float = 0.0,
    mode: str = "lines",
    organization: Callable[[], str | None] | None = None,
    say_error: Callable[[str], None] | None = None,
) -> tuple[int, dict[str, Any] | None]:
    """Runs `run` under the lock and records it; returns the exit code and the summary.

    An expected failure (named by `describe_failure`) is handed to `say_error` (default: one
    `error:` line on stderr); anything else is recorded and raised. `organization` gives the
    run's Close organization id where the dataset holds several (else it is looked up).
    """
    say = say_error or _print_error
    record = RunRecord(
        pipeline.pipeline_name, command, pipeline.dataset_name, *_host_pid(), run_id=new_run_id()
    )
    lock = lock_for(pipeline, this_process(record.run_id))
    what = f"pipeline {pipeline.pipeline_name} (dataset {pipeline.dataset_name})"
    try:
        acquire(lock, wait_s, what)
    except RunLocked as exc:
        return _failed(pipeline, record, str(exc), say), None
    except Exception as exc:
        lock.release()
        message = describe_failure(exc)
        if message is None:
            raise
        return _failed(pipeline, record, message, say), None
    try:
        record.cursor_before = cursors(pipeline, from_destination=True)
        progress = RunProgress()
        summary = _with_display(mode, progress, command, lambda: run(progress))
    except BaseException as exc:
        message = describe_failure(exc) if isinstance(exc, Exception) else None
        # an interrupt or a bug is recorded here and said by the caller (one line, or the
        # traceback of a bug), so it is not said twice
        crashed = f"interrupted or crashed: {type(exc).__name__}"
        _failed(pipeline, record, message or crashed, say if message else lambda _: None)
        lock.release()
        if message is None:
            raise
        return 1, None
    record.take_summary(summary)
    record.cursor_after = cursors(pipeline)
    record.organization_id = (organization or (lambda: organization_id(pipeline, progress)))()
    record.finish()
    record_run(pipeline, record)
    lock.release()
    summary["run_id"] = record.run_id
    return 0, summary


def print_summary(summary: dict[str, Any], as_json: bool, key_values: Callable[..., str]) -> None:
    """The summary on stdout: JSON with `--json`, else `key: value` lines."""
    print(json.dumps(summary, indent=2, default=str) if as_json else key_values(summary))


def _failed(
    pipeline: dlt.Pipeline, record: RunRecord, message: str, say: Callable[[str], None]
) -> int:
    record.finish(message)
    record_run(pipeline, record)
    say(message)
    return 1


def _print_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _with_display(
    mode: str, progress: RunProgress, command: str, body: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    made = make_display(mode, progress, sys.stderr, command)
    if made is None:
        return body()
    display, interval = made
    with Ticker(display, interval):
        return body()


def cursors(pipeline: dlt.Pipeline, from_destination: bool = False) -> str | None:
    """`date_created=…; event_log=…`: the nightly cursors (None before any run)."""
    state: Any = pipeline.state
    if from_destination:
        try:
            with pipeline.destination_client() as client:
                state = load_pipeline_state_from_destination(pipeline.pipeline_name, client)  # type: ignore[arg-type]
        except Exception:  # nothing loaded yet, or unreachable: the run will say which
            state = None
    source_state = (state or {}).get("sources", {}).get("close", {})
    walk, events = walk_cursor(source_state), source_state.get("event_cursor")
    if not walk and not events:
        return None
    return f"date_created={walk or ''}; event_log={events or ''}"


def organization_id(pipeline: dlt.Pipeline, progress: RunProgress) -> str | None:
    """Close's organization id: from the emails stored, else from `GET /me/`."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("emails")
            rows = client.execute_sql(
                f"SELECT organization_id FROM {table} WHERE organization_id IS NOT NULL LIMIT 1"
            )
        if rows:
            return str(rows[0][0])
    except Exception:  # no emails table yet
        pass
    close = getattr(progress.walk, "client", None)
    if close is None:
        return None
    try:
        return close.organization_id()  # type: ignore[no-any-return]
    except Exception as exc:  # the run succeeded; a missing id is not worth failing it
        logger.debug("organization id unknown: %s", exc)
        return None


def _host_pid() -> tuple[str, int]:
    holder = this_process("")
    return holder.host, holder.pid
