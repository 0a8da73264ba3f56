"""Crash and resume: the real CLI SIGKILLed at many points, then run again until exact.

Kill points are of two kinds: the n-th API request (the emulator kills the client the
moment that request is answered, before the answer leaves: deterministic), and dlt's step
boundaries (the `CLOSE_SYNC_KILL_AT` hook of pipelines/runner.py). Each is tried on a first
sync loaded in chunks, on an incremental sync after changes, and on a backfill. After the
kill Close changes a little more, the command is run again, and then: the warehouse equals
the emulator's truth, no id is duplicated in any table, no child row is orphaned, and one
more run changes nothing. `make test` runs one seed of a few points; `make soak` all.
"""

import os
import signal
import subprocess
from collections.abc import Callable
from datetime import timedelta

import pytest

from close_emulator import EmulatorServer
from tests.close.test_crash import change_emails
from tests.conftest import DESTINATIONS

from .common import assert_exact, cli, cli_command, cli_env, loads_nothing_new

SOAK = pytest.mark.soak
SEEDS = (51, 52, 53)
# `<step>:<n>:<run>`: how many chunk runs a command makes depends on timing (a chunk grows
# while the walk's workers are ahead), so a later run's normalize or load point means the
# last run when there are fewer (CrashSwitch); extract points stay in the first run, where
# one is always reached (a later chunk's extract is killed by the later request points)
POINTS = {
    "first": ["request:3", "request:8", "request:14", "extract:2", "normalize:0:2", "load:1:3",
              "load:0:1"],
    "incremental": ["request:2", "request:5", "request:9", "extract:1", "normalize:0", "load:1"],
    "backfill": ["request:2", "request:6", "extract:2", "normalize:0:1", "load:1:3", "load:1:99"],
}  # fmt: skip
# on DuckDB, in `make test` (tests/close/test_crash.py kills first syncs at dlt's steps there)
QUICK = {("incremental", "request:5")}


def killed_at_request(close: EmulatorServer, args: list[str], count: int) -> int:
    """Runs the CLI and SIGKILLs it as the emulator answers its `count`-th API request."""
    log = close.emulator.request_log
    original: Callable = log.append
    seen = [0]
    process: list[subprocess.Popen] = []

    def append(entry) -> None:  # noqa: ANN001
        original(entry)
        if entry.path.startswith("/api"):
            seen[0] += 1
            if seen[0] == count and process:
                os.kill(process[0].pid, signal.SIGKILL)

    log.append = append  # type: ignore[method-assign]
    try:
        process.append(
            subprocess.Popen(cli_command(args), env=cli_env(close.base_url),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        )  # fmt: skip
        _out, err = process[0].communicate(timeout=300)
    finally:
        log.append = original  # type: ignore[method-assign]
    return process[0].returncode


def run_killed(close: EmulatorServer, args: list[str], point: str) -> int:
    if point.startswith("request:"):
        return killed_at_request(close, args, int(point.split(":")[1]))
    return cli(close.base_url, args, CLOSE_SYNC_KILL_AT=point).returncode


def cases() -> list:
    """Every kind × point × seed on both destinations under `make soak`; QUICK in `make test`."""
    params = []
    for seed in SEEDS:
        for kind, points in POINTS.items():
            for point in points:
                for destination in DESTINATIONS:
                    name = getattr(destination, "values", [destination])[0]
                    marks = list(getattr(destination, "marks", []))
                    quick = seed == SEEDS[0] and (kind, point) in QUICK and name == "duckdb"
                    params.append(pytest.param(
                        name, kind, point, seed, marks=marks + ([] if quick else [SOAK]),
                        id=f"{name}-{kind}-{point}-seed{seed}",
                    ))  # fmt: skip
    return params


@pytest.mark.parametrize("destination, kind, point, seed", cases(), indirect=["destination"])
def test_killed_then_rerun_is_exact(
    make_emulator,
    sync_env,
    monkeypatch,  # noqa: ANN001
    kind: str,
    point: str,
    seed: int,
) -> None:
    close = make_emulator(emails=600, seed=seed)
    monkeypatch.setenv("SOURCES__CLOSE__CHUNK_EMAILS", "200")
    monkeypatch.setenv("SOURCES__CLOSE__CONCURRENCY", "2")
    args = ["sync"]
    if kind != "first":
        assert cli(close.base_url, ["sync"]).returncode == 0
        change_emails(close, 1)
    if kind == "backfill":
        now = close.emulator.clock.now()
        start, end = (now - timedelta(days=500)).date(), (now - timedelta(days=20)).date()
        args = ["backfill", "--start", start.isoformat(), "--end", end.isoformat()]

    code = run_killed(close, args, point)
    assert code == -signal.SIGKILL, f"the run was not killed at {point} (exit {code})"
    change_emails(close, 2)
    rerun = cli(close.base_url, args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    if kind == "backfill":
        assert cli(close.base_url, ["sync"]).returncode == 0  # the nightly job catches up
    assert_exact(close)
    loads_nothing_new(close)
