"""`sync_runs`: one row per run — succeeded, failed and refused by the lock — with exact counts."""

import os
import subprocess
import sys

import pytest

from close_emulator import EmulatorServer

from ..close.utils import query, run_cli, sync
from ..conftest import TEST_API_KEY
from .helpers import hold_lock

CONTRACT_COLUMNS = {
    "run_id", "pipeline_name", "organization_id", "command", "started_at", "finished_at",
    "status", "error", "emails_new", "emails_updated", "emails_deleted", "rows_loaded",
    "api_requests", "api_throttled", "cursor_before", "cursor_after",
}  # fmt: skip


def runs() -> list[dict]:
    return query("SELECT * FROM {ds}.sync_runs ORDER BY started_at")


def test_succeeded_runs_are_recorded_with_exact_counts(make_emulator, sync_env) -> None:  # noqa: ANN001
    close: EmulatorServer = make_emulator(emails=120, seed=3)
    emulator = close.emulator
    first = sync(close.base_url)
    assert "emails.new: 120" in first
    sync(close.base_url)  # no change: re-reads what the rescan window shows, changes nothing
    emails = emulator.all_emails()
    emulator.update_email(emails[0]["id"], subject="changed")
    emulator.delete_email(emails[1]["id"])
    emulator.create_email(lead_id=emails[2]["lead_id"], status="inbox", subject="new one")
    third = sync(close.base_url)
    assert "emails.updated: 1\n" in third and "emails.deleted: 1\n" in third
    assert "emails.new: 1\n" in third

    rows = runs()
    assert CONTRACT_COLUMNS <= set(rows[0])
    assert [r["status"] for r in rows] == ["succeeded"] * 3
    assert [(r["emails_new"], r["emails_updated"], r["emails_deleted"]) for r in rows] == [
        (120, 0, 0),
        (0, 0, 0),
        (1, 1, 1),
    ]
    org = emails[0]["organization_id"]
    for row in rows:
        assert row["pipeline_name"] == sync_env["PIPELINE_NAME"] and row["command"] == "sync"
        assert row["organization_id"] == org and row["error"] is None
        assert row["started_at"] <= row["finished_at"] and row["started_at"].tzinfo is not None
        assert row["api_requests"] > 0 and row["api_throttled"] == 0
    assert rows[0]["rows_loaded"] > 120 and rows[1]["rows_loaded"] == 0
    assert rows[0]["cursor_before"] is None and "date_created=" in rows[0]["cursor_after"]
    assert rows[1]["cursor_before"] == rows[0]["cursor_after"]
    assert len({r["run_id"] for r in rows}) == 3
    assert f"run_id: {rows[2]['run_id']}" in third


@pytest.mark.parametrize("destination", ["duckdb"])  # the lock on PostgreSQL: test_runlock
def test_failed_and_refused_runs_are_recorded_without_secrets(make_emulator, sync_env) -> None:  # noqa: ANN001
    close: EmulatorServer = make_emulator(emails=20, api_key=TEST_API_KEY)
    os.environ["SOURCES__CLOSE__API_KEY"] = "api_wrong_key_DO_NOT_LEAK"
    code, out, err = run_cli("sync", base_url=close.base_url)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    os.environ["SOURCES__CLOSE__API_KEY"] = TEST_API_KEY

    with hold_lock("holder-run-1"):
        code, out, refused = run_cli("sync", base_url=close.base_url)
    assert code == 1 and out == ""
    assert refused.count("\n") == 1 and "holder-run-1" in refused, refused

    rows = runs()
    assert [(r["command"], r["status"]) for r in rows] == [("sync", "failed")] * 2
    assert rows[0]["error"] == err.strip().removeprefix("error: ")
    assert "holder-run-1" in rows[1]["error"] and "pid" in rows[1]["error"]
    assert all(r["finished_at"] is not None and r["emails_new"] is None for r in rows)
    dump = repr(query("SELECT * FROM {ds}.sync_runs"))
    assert "DO_NOT_LEAK" not in dump and TEST_API_KEY not in dump
    code, out, _ = run_cli("status")
    assert code == 0 and "no successful run yet" in out and "last_runs.1: " in out
    assert "holder-run-1" in out


def test_a_failure_before_any_destination_exists_prints_one_line(tmp_path) -> None:  # noqa: ANN001
    """An unreachable destination: the run cannot be recorded, and still says one line."""
    env = {
        **os.environ,
        "SOURCES__CLOSE__API_KEY": TEST_API_KEY,
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
        "DESTINATION__POSTGRES__CREDENTIALS": "postgresql://nobody:pw@127.0.0.1:9/none",
        "SOURCES__CLOSE__BASE_URL": "http://127.0.0.1:9/api/v1",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.close_emails", "sync", "--destination", "postgres"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "destination unreachable" in done.stderr
    assert "Traceback" not in done.stderr and "pw@" not in done.stderr


def test_a_busy_duckdb_file_is_retried(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """The holder of the run lock may be writing the file when a refused run records itself."""
    from pipelines.runner import make_pipeline
    from pipelines.runs import RunRecord, last_runs, record_run

    database = tmp_path / "busy.duckdb"
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(database))
    writer = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; held = duckdb.connect(sys.argv[1]);"
         " print('open', flush=True); time.sleep(600)", str(database)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout is not None and writer.stdout.readline().strip() == "open"
    pauses: list[float] = []

    def pause(seconds: float) -> None:  # the writer finishes during the second pause
        pauses.append(seconds)
        if len(pauses) == 2:
            writer.kill()
            writer.wait()

    pipeline = make_pipeline("close_busy", "duckdb", "close")
    record = RunRecord("close_busy", "sync", "close", "h", 1)
    record.finish("refused")
    try:
        assert record_run(pipeline, record, sleep=pause)
    finally:
        writer.kill()
    assert len(pauses) == 2
    assert [r["run_id"] for r in last_runs(pipeline)] == [record.run_id]


@pytest.mark.parametrize("destination", ["duckdb"])
def test_status_shows_a_pending_load(make_emulator, sync_env) -> None:  # noqa: ANN001
    """A run killed between extract and load leaves a package: `status` names it."""
    close = make_emulator(emails=20)
    env = {**os.environ, "SOURCES__CLOSE__BASE_URL": close.base_url, "CLOSE_SYNC_KILL_AT": "load:0"}
    common = ["--destination", "duckdb", "--dataset", os.environ["DATASET"],
              "--pipeline-name", os.environ["PIPELINE_NAME"]]  # fmt: skip
    killed = subprocess.run([sys.executable, "-m", "pipelines.close_emails", "sync", *common],
                            env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert killed.returncode == -9
    code, out, _ = run_cli("status")
    assert code == 0 and "pending_loads: 1" in out and "the next sync loads them first" in out
    sync(close.base_url)
    code, out, _ = run_cli("status")
    assert "pending_loads: 0" in out and "last_runs.1: " in out and "last_runs.2" not in out
