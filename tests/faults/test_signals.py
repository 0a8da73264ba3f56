"""Ctrl-C and SIGTERM sent to the real CLI: one line, exit 130/143, the next run exact."""

import signal
import subprocess
import time

import pytest

from close_emulator import EmulatorServer
from tests.close.utils import run_cli
from tests.conftest import DESTINATIONS

from .common import api_requests, assert_exact, cli, cli_command, cli_env, loads_nothing_new

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
POSTGRES = DESTINATIONS[1]  # with its skip mark when no PostgreSQL answers


def wait_for_list_requests(close: EmulatorServer, process: subprocess.Popen, count: int) -> None:
    """Blocks until the run has listed `count` pages (or ended, which fails the test)."""
    deadline = time.monotonic() + 120  # a bound on a hang, not a timing assertion
    while time.monotonic() < deadline and process.poll() is None:
        if sum(e.path.endswith("/email/") for e in api_requests(close)) >= count:
            return
        time.sleep(0.05)
    pytest.fail(f"the run ended or hung before {count} list requests: {process.poll()}")


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)  # the walk is the same
@pytest.mark.parametrize(
    "signum",
    [pytest.param(signal.SIGINT, marks=pytest.mark.soak), signal.SIGTERM],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_mid_walk_stops_cleanly_and_the_rerun_is_exact(
    make_emulator,
    sync_env,
    monkeypatch,  # noqa: ANN001
    signum: int,
) -> None:
    close = make_emulator(emails=1500, seed=31)
    monkeypatch.setenv("SOURCES__CLOSE__CHUNK_EMAILS", "300")
    close.emulator.faults.set(latency_ms=40, path_prefix="/api/v1/activity/email")
    process = subprocess.Popen(
        cli_command(["sync"]), env=cli_env(close.base_url), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_list_requests(close, process, 6)
    process.send_signal(signum)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == EXIT[signum], err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "stopped by" in lines[0] and "Traceback" not in err, err[-3000:]
    close.emulator.faults.reset()
    rerun = cli(close.base_url, ["sync"])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_exact(close)
    loads_nothing_new(close)


# where the destination does not change the path, DuckDB alone (keeps `make test` short)
@pytest.mark.parametrize(
    "destination, kill_at, code",
    [
        pytest.param("duckdb", "normalize:0:1:TERM", 143, marks=pytest.mark.soak),
        pytest.param("duckdb", "load:1:1:INT", 130, marks=pytest.mark.soak),
        ("duckdb", "load:1:2:TERM", 143),
        pytest.param("postgres", "load:1:2:TERM", 143, marks=[*POSTGRES.marks, pytest.mark.soak]),
    ],
    ids=["SIGTERM-before-normalize", "SIGINT-mid-load", "SIGTERM-mid-load-of-chunk-2",
         "postgres-SIGTERM-mid-load-of-chunk-2"],
    indirect=["destination"],
)  # fmt: skip
def test_a_signal_inside_dlt_steps_keeps_the_package_and_the_rerun_is_exact(
    make_emulator,
    sync_env,
    monkeypatch,  # noqa: ANN001
    kill_at: str,
    code: int,
) -> None:
    close = make_emulator(emails=600, seed=32)
    monkeypatch.setenv("SOURCES__CLOSE__CHUNK_EMAILS", "200")
    stopped = cli(close.base_url, ["sync"], CLOSE_SYNC_KILL_AT=kill_at)
    assert stopped.returncode == code, stopped.stderr[-3000:]
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "stopped by" in lines[0], stopped.stderr[-3000:]
    status = run_cli("status")  # a package left pending does not make status fail
    assert status[0] == 0, status[2]
    rerun = cli(close.base_url, ["sync"])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_exact(close)
    loads_nothing_new(close)
