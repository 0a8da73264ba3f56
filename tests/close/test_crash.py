"""Crash safety: the real CLI killed with SIGKILL at several points, then one clean rerun."""

import os
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from close_emulator import EmulatorServer
from tests.conftest import DESTINATIONS, DUCKDB_AND_SOAK_POSTGRES

from .utils import assert_warehouse_equals, query, run_cli, sync

POSTGRES = DESTINATIONS[1]  # with its skip mark when no PostgreSQL answers

ROOT = Path(__file__).resolve().parents[2]


def cli(base_url: str, args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    """Runs the real command line in its own process, optionally killed at `kill_at`."""
    env = dict(os.environ, SOURCES__CLOSE__BASE_URL=base_url, PYTHONPATH=str(ROOT))
    env.pop("CLOSE_SYNC_KILL_AT", None)
    if kill_at:
        env["CLOSE_SYNC_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "pipelines.close_emails", *args,
               "--destination", env["DESTINATION"], "--dataset", env["DATASET"],
               "--pipeline-name", env["PIPELINE_NAME"]]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def cli_sync(base_url: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    return cli(base_url, ["sync"], kill_at)


def change_emails(close: EmulatorServer, round_: int) -> None:
    """Opens, a reply, a deletion and a new email: work for the next sync."""
    emulator = close.emulator
    sent = [e for e in emulator.all_emails() if e["status"] == "sent"]
    for email in sent[round_ * 5 : round_ * 5 + 5]:
        emulator.record_open(email["id"])
    emulator.receive_reply(sent[50 + round_]["id"])
    emulator.delete_email(sent[80 + round_]["id"])
    emulator.create_email(lead_id=sent[0]["lead_id"], status="inbox", subject=f"round {round_}")


# PostgreSQL's kills before its load under `make soak` only: DuckDB has them in `make test`
@pytest.mark.parametrize(
    "destination, kill_at",
    [
        ("duckdb", "extract:1"),
        ("duckdb", "normalize:0"),
        ("duckdb", "load:1"),
        pytest.param("postgres", "extract:1", marks=[*POSTGRES.marks, pytest.mark.soak]),
        pytest.param("postgres", "normalize:0", marks=[*POSTGRES.marks, pytest.mark.soak]),
        pytest.param("postgres", "load:1", marks=POSTGRES.marks),
    ],
    ids=[f"{d}-{k}" for d in ("duckdb", "postgres")
         for k in ("mid-extract", "after-extract-before-load", "mid-load")],
    indirect=["destination"],
)  # fmt: skip
def test_killed_sync_then_clean_rerun_equals_close(
    make_emulator,
    sync_env,
    kill_at: str,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=600, seed=21)
    close.emulator.create_email(lead_id="lead_seed", status="inbox", subject="seed")
    sync(close.base_url)
    change_emails(close, 1)

    killed = cli_sync(close.base_url, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    change_emails(close, 2)

    rerun = cli_sync(close.base_url)
    assert rerun.returncode == 0, rerun.stderr
    # a kill after extract leaves a load package behind, which the rerun loads first
    assert ("left pending by an interrupted run" in rerun.stderr) == (kill_at != "extract:1")
    assert_warehouse_equals(close.emulator.all_emails())
    for view in ("email_recipients", "email_opens", "email_attachments"):
        duplicates = query(
            f"SELECT email_id, role, position FROM {{ds}}.{view} GROUP BY 1, 2, 3 HAVING COUNT(*) > 1"
            if view == "email_recipients"
            else f"SELECT email_id, position FROM {{ds}}.{view} GROUP BY 1, 2 HAVING COUNT(*) > 1"
        )
        assert duplicates == [], view


@pytest.mark.parametrize("destination", DUCKDB_AND_SOAK_POSTGRES, indirect=True)
def test_first_sync_killed_mid_extract_then_rerun_equals_close(
    make_emulator,
    sync_env,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=600, seed=22)
    killed = cli_sync(close.base_url, "extract:3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    change_emails(close, 1)
    rerun = cli_sync(close.base_url)
    assert rerun.returncode == 0, rerun.stderr
    assert_warehouse_equals(close.emulator.all_emails())


@pytest.mark.parametrize("destination", DUCKDB_AND_SOAK_POSTGRES, indirect=True)
def test_killed_backfill_resumes_from_the_last_loaded_chunk(
    make_emulator,
    sync_env,
    monkeypatch,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=1200, seed=23)
    sync(close.base_url)
    monkeypatch.setenv("SOURCES__CLOSE__CHUNK_EMAILS", "100")
    monkeypatch.setenv("SOURCES__CLOSE__CONCURRENCY", "2")
    now = close.emulator.clock.now()
    start, end = (now - timedelta(days=400)).date(), (now - timedelta(days=40)).date()
    args = ["backfill", "--start", start.isoformat(), "--end", end.isoformat()]
    state_before = status_cursors()
    close.emulator.delete_email(_email_with_activity_in(close, start, end))  # to be noticed

    killed = cli(close.base_url, args, kill_at="extract:1:4")  # dies in the 4th chunk
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    close.emulator.request_log.clear()
    rerun = cli(close.base_url, args)
    assert rerun.returncode == 0, rerun.stderr
    assert "backfill.resumed: True" in rerun.stdout
    in_range = [e for e in close.emulator.all_emails() if _activity_in(e, start, end)]
    lists = [e for e in close.emulator.request_log.snapshot() if e.path.endswith("/email/")]
    assert len(lists) < -(-len(in_range) // 100), "the rerun walked the whole range again"
    assert status_cursors() == state_before
    assert_warehouse_equals(close.emulator.all_emails())


@pytest.mark.parametrize("destination", DUCKDB_AND_SOAK_POSTGRES, indirect=True)
def test_first_sync_killed_after_some_chunks_resumes_from_the_last_loaded_one(
    make_emulator,
    sync_env,
    monkeypatch,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=3000, seed=24)
    monkeypatch.setenv("SOURCES__CLOSE__CHUNK_EMAILS", "500")
    monkeypatch.setenv("SOURCES__CLOSE__CONCURRENCY", "4")
    killed = cli_sync(close.base_url, "extract:1:4")  # three chunks loaded, killed in the 4th
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    loaded = query("SELECT COUNT(*) AS n FROM {ds}.emails")[0]["n"]
    assert loaded >= 1500
    change_emails(close, 1)
    close.emulator.request_log.clear()
    rerun = cli_sync(close.base_url)
    assert rerun.returncode == 0, rerun.stderr
    lists = [e for e in close.emulator.request_log.snapshot() if e.path.endswith("/email/")]
    left = len(close.emulator.all_emails()) - loaded
    # only the ranges not loaded are walked again (plus the change scan's one re-fetch)
    assert len(lists) <= -(-left // 100) + 3 * 4 + 10, (len(lists), left)
    assert_warehouse_equals(close.emulator.all_emails())
    again = cli_sync(close.base_url)  # re-reads only the last five minutes of events
    assert (
        again.returncode == 0
        and f"emails.total: {len(close.emulator.all_emails())}" in again.stdout
    )
    assert_warehouse_equals(close.emulator.all_emails())


def _activity_in(email: dict, start: date, end: date) -> bool:
    moment = email.get("activity_at")
    return moment is not None and start.isoformat() <= moment[:10] < end.isoformat()


def _email_with_activity_in(close: EmulatorServer, start: date, end: date) -> str:
    return next(e["id"] for e in close.emulator.all_emails() if _activity_in(e, start, end))


def status_cursors() -> list[str]:
    code, out, _ = run_cli("status")
    assert code == 0
    return [line for line in out.splitlines() if line.startswith("cursor.")]
