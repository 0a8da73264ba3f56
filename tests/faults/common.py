"""Helpers of the fault suite: the real CLI in a subprocess, and the warehouse checked whole."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from close_emulator import EmulatorServer
from tests.close.utils import assert_warehouse_equals, query, run_cli

ROOT = Path(__file__).resolve().parents[2]
# the natural key of each child view: no two rows may share it
CHILD_KEYS = {
    "email_recipients": "email_id, role, position",
    "email_attachments": "email_id, position",
    "email_opens": "email_id, position",
    "email_send_attempts": "email_id, position",
    "email_message_ids": "email_id, kind, position",
}


def cli_command(args: list[str]) -> list[str]:
    """`python -m pipelines.close_emails ARGS` with the test's pipeline options."""
    return [sys.executable, "-m", "pipelines.close_emails", *args,
            "--destination", os.environ["DESTINATION"], "--dataset", os.environ["DATASET"],
            "--pipeline-name", os.environ["PIPELINE_NAME"]]  # fmt: skip


def cli_env(base_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, SOURCES__CLOSE__BASE_URL=base_url, PYTHONPATH=str(ROOT), **extra)
    env.pop("CLOSE_SYNC_KILL_AT", None)
    env.update(extra)
    return env


def cli(base_url: str, args: list[str], **extra_env: str) -> subprocess.CompletedProcess:
    """Runs the real command line in its own process; returns it finished."""
    return subprocess.run(
        cli_command(args), env=cli_env(base_url, **extra_env), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def one_line(stderr: str) -> str:
    """The single line of a failure's stderr (fails the test when there are more)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def cursors() -> list[str]:
    """The `cursor.*` lines of `status` (as of the last successful load)."""
    code, out, err = run_cli("status")
    assert code == 0, err
    return [line for line in out.splitlines() if line.startswith(("cursor.", "status:"))]


def api_requests(close: EmulatorServer) -> list[Any]:
    return [e for e in close.emulator.request_log.snapshot() if e.path.startswith("/api")]


def assert_exact(close: EmulatorServer) -> None:
    """The warehouse equals the emulator's truth: no row lost, duplicated or orphaned."""
    assert_warehouse_equals(close.emulator.all_emails())
    for view, key in CHILD_KEYS.items():
        duplicates = query(f"SELECT {key} FROM {{ds}}.{view} GROUP BY {key} HAVING COUNT(*) > 1")
        assert duplicates == [], (view, duplicates[:3])
        orphans = query(
            f"SELECT COUNT(*) AS n FROM {{ds}}.{view} c"
            f" WHERE NOT EXISTS (SELECT 1 FROM {{ds}}.emails e WHERE e.id = c.email_id)"
        )
        assert orphans[0]["n"] == 0, view


def loads_nothing_new(close: EmulatorServer) -> None:
    """One more sync succeeds and the warehouse stays exact (it re-reads five minutes of
    events, so the summary may count re-applied changes; the data must not move)."""
    code, out, err = run_cli("sync", base_url=close.base_url)
    assert code == 0, err
    assert f"emails.total: {len(close.emulator.all_emails())}" in out, out
    assert_exact(close)
