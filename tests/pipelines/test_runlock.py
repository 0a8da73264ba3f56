"""The run lock: two real processes, a holder killed with SIGKILL, `--wait` on a fake clock."""

import os
import signal
import subprocess
import sys

import pytest

from pipelines.runlock import Holder, RunLocked, acquire, lock_for, this_process
from pipelines.runner import make_pipeline
from tests.destinations import every_destination  # noqa: F401  (DuckDB, PostgreSQL, MariaDB)

from ..close.utils import run_cli
from .helpers import start_holder, wait_for

NAMED_BY_SESSION = "the session of MySQL/MariaDB connection"  # a named lock carries no text


def holds(lock, pid: int) -> bool:  # noqa: ANN001
    """Whether process `pid` holds `lock` (on MariaDB: whether anyone does)."""
    holder = lock.holder()
    if os.environ["DESTINATION"] == "sqlalchemy":
        return holder is not None
    return holder is not None and holder.pid == pid


def cli(*args: str) -> list[str]:
    common = ["--destination", os.environ["DESTINATION"], "--dataset", os.environ["DATASET"],
              "--pipeline-name", os.environ["PIPELINE_NAME"]]  # fmt: skip
    return [sys.executable, "-m", "pipelines.close_emails", *args, *common]


def test_a_second_run_exits_at_once_naming_the_holder(make_emulator, sync_env) -> None:  # noqa: ANN001
    close = make_emulator(emails=300, seed=5)
    close.emulator.faults.set(latency_ms=3000)  # the first run stays busy until reset below
    env = {**os.environ, "SOURCES__CLOSE__BASE_URL": close.base_url}
    first = subprocess.Popen(cli("sync"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lock = lock_for(make_pipeline(os.environ["PIPELINE_NAME"], os.environ["DESTINATION"], os.environ["DATASET"]),  # fmt: skip
                    this_process("probe"))  # fmt: skip
    wait_for(lambda: holds(lock, first.pid) or first.poll() is not None)
    assert first.poll() is None, "the first run ended before the second could try"
    second = subprocess.run(cli("sync"), env=env, capture_output=True, text=True, timeout=120)
    assert first.poll() is None  # the lock was held all along
    close.emulator.faults.reset()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 1 and second.stdout == ""
    assert second.stderr.count("\n") == 1 and "--wait" in second.stderr
    if os.environ["DESTINATION"] == "sqlalchemy":
        assert f"is locked by {NAMED_BY_SESSION}" in second.stderr, second.stderr
    else:
        assert f"(pid {first.pid})" in second.stderr and "locked by run " in second.stderr
    assert "Traceback" not in second.stderr


def test_a_killed_holder_does_not_block(make_emulator, sync_env) -> None:  # noqa: ANN001
    close = make_emulator(emails=30)
    holder = start_holder("doomed-run")
    pipeline = make_pipeline(os.environ["PIPELINE_NAME"], os.environ["DESTINATION"], os.environ["DATASET"])  # fmt: skip
    probe = lock_for(pipeline, this_process("probe"))
    by_session = os.environ["DESTINATION"] == "sqlalchemy"
    if not by_session:
        assert probe.holder() == Holder(
            "doomed-run", probe.holder().host, holder.pid, probe.holder().since
        )  # type: ignore[union-attr]
    code, _, err = run_cli("sync", base_url=close.base_url)
    assert code == 1 and (NAMED_BY_SESSION if by_session else "doomed-run") in err, err
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    if os.environ["DESTINATION"] != "duckdb":  # the server ends the dead session at once
        wait_for(lambda: probe.holder() is None)
    code, out, err = run_cli("sync", base_url=close.base_url)
    assert code == 0, err
    assert "emails.new: 30" in out


class FakeLock:
    def __init__(self, free_after: int) -> None:
        self.tries, self.free_after = 0, free_after

    def try_acquire(self) -> bool:
        self.tries += 1
        return self.tries > self.free_after

    def holder(self) -> Holder:
        return Holder("run-a", "host-a", 42, "2026-01-01T00:00:00+00:00")

    def release(self) -> None:
        pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_polls_until_the_holder_is_gone() -> None:
    clock = FakeClock()
    lock = FakeLock(free_after=5)
    acquire(lock, wait_s=10, clock=clock, sleep=clock.sleep)
    assert lock.tries == 6 and clock.now == 5.0


def test_wait_gives_up_naming_the_holder() -> None:
    clock = FakeClock()
    with pytest.raises(RunLocked) as raised:
        acquire(
            FakeLock(free_after=99), wait_s=3, what="pipeline p", clock=clock, sleep=clock.sleep
        )
    assert clock.now == 3.0
    message = str(raised.value)
    assert "run run-a on host-a (pid 42) since 2026-01-01T00:00:00+00:00" in message
    assert "after waiting 3 s" in message and "\n" not in message


def test_without_wait_a_held_lock_fails_at_once() -> None:
    clock = FakeClock()
    with pytest.raises(RunLocked):
        acquire(FakeLock(free_after=1), clock=clock, sleep=clock.sleep)
    assert clock.now == 0.0
