"""Helpers for the operations tests: a real process holding the run lock."""

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

HOLDER = """
import sys, time
from pipelines.runlock import acquire, lock_for, this_process
from pipelines.runner import make_pipeline
pipeline = make_pipeline(*sys.argv[1:4])
lock = lock_for(pipeline, this_process(sys.argv[4]))  # kept: a collected lock is released
acquire(lock)
print("held", flush=True)
time.sleep(600)
"""


def start_holder(run_id: str) -> subprocess.Popen[str]:
    """A separate process that takes the test pipeline's run lock and keeps it."""
    args = [os.environ["PIPELINE_NAME"], os.environ["DESTINATION"], os.environ["DATASET"]]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *args, run_id],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@contextlib.contextmanager
def hold_lock(run_id: str) -> Iterator[subprocess.Popen[str]]:
    holder = start_holder(run_id)
    try:
        yield holder
    finally:
        holder.kill()
        holder.wait()


def wait_for(predicate, timeout: float = 60.0) -> None:  # noqa: ANN001
    """Polls `predicate` (a readiness check, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)
