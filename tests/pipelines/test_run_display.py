"""Progress: live on a terminal (a pty), sparse plain lines otherwise, nothing with --quiet."""

import io
import json
import os
import pty
import select
import subprocess
import sys
from types import SimpleNamespace

import pytest

from pipelines.run_display import LineDisplay, RunProgress

from ..close.utils import run_cli


@pytest.fixture
def destination() -> str:
    return "duckdb"  # output does not depend on the destination


def fake_progress(requests: int = 0) -> RunProgress:
    stats = SimpleNamespace(requests=SimpleNamespace(requests=requests))
    counter = SimpleNamespace(emails_seen=1234)
    return RunProgress(stats=stats, counter=counter, chunks=2, started=100.0)


def test_plain_lines_wait_10_s_then_come_at_most_every_30_s() -> None:
    progress = fake_progress()
    stream = io.StringIO()
    display = LineDisplay(progress, stream)
    for now in (100.0, 105.0, 109.9):
        display.tick(now)
    assert stream.getvalue() == ""  # a run failing in its first 10 s prints only its error
    display.tick(110.0)
    assert stream.getvalue().count("\n") == 1
    progress.stats.requests.requests = 300
    for now in (111.0, 125.0, 139.9):
        display.tick(now)
    assert stream.getvalue().count("\n") == 1
    display.tick(140.0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1] == "progress: 1,234 emails fetched, 2 chunks loaded, 10.0 req/s"


def test_quiet_prints_nothing_and_json_is_machine_readable(make_emulator, sync_env) -> None:  # noqa: ANN001
    close = make_emulator(emails=40)
    code, out, err = run_cli("sync", "--quiet", base_url=close.base_url)
    assert code == 0 and out == "" and err == ""
    code, out, err = run_cli("sync", "--json", base_url=close.base_url)
    assert code == 0 and err == ""  # not a terminal and under 10 s: no progress line
    summary = json.loads(out)
    assert summary["command"] == "sync" and summary["emails.new"] == 0
    assert summary["emails.updated"] == 0 and summary["emails.total"] == 40
    code, out, err = run_cli("backfill", "--start", "2000-01-01", "--end", "2100-01-01", "--json",
                             base_url=close.base_url)  # fmt: skip
    assert code == 0 and json.loads(out)["command"] == "backfill"
    assert json.loads(out)["emails.updated"] == 0  # re-read, unchanged


def test_verbose_logs_debug_without_secrets(make_emulator, sync_env) -> None:  # noqa: ANN001
    close = make_emulator(emails=10)
    env = {**os.environ, "SOURCES__CLOSE__BASE_URL": close.base_url}
    done = subprocess.run(cli("sync", "--verbose"), env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert " DEBUG " in done.stderr and "GET /api/v1/activity/email/" in done.stderr
    assert sync_env["SOURCES__CLOSE__API_KEY"] not in done.stderr + done.stdout
    assert ":postgres@" not in done.stderr  # DSN passwords are redacted too


def cli(*args: str) -> list[str]:
    common = ["--destination", os.environ["DESTINATION"], "--dataset", os.environ["DATASET"],
              "--pipeline-name", os.environ["PIPELINE_NAME"]]  # fmt: skip
    return [sys.executable, "-m", "pipelines.close_emails", *args, *common]


def test_a_terminal_gets_a_live_display(make_emulator, sync_env) -> None:  # noqa: ANN001
    close = make_emulator(emails=200, seed=2, rate=5)  # a few seconds: several refreshes
    env = {**os.environ, "SOURCES__CLOSE__BASE_URL": close.base_url, "COLUMNS": "160"}
    leader, follower = pty.openpty()
    run = subprocess.Popen(
        cli("sync"),
        env=env, stdout=subprocess.PIPE, stderr=follower, text=True,
    )  # fmt: skip
    os.close(follower)
    screen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the pty closed with the process
                break
            if not chunk:
                break
            screen += chunk
        elif run.poll() is not None:
            break
    os.close(leader)
    out = run.communicate(timeout=60)[0]
    text = screen.decode(errors="replace")
    assert run.returncode == 0, text
    assert "\x1b[" in text  # drawn with terminal control sequences, redrawn in place
    assert "sync" in text and "emails" in text and "chunks" in text and "req/s" in text
    assert "100%" in text and "progress:" not in text
    assert "emails.new: 200" in out  # the summary stays on stdout
