"""A disk that fills while loading: one line, the cursors untouched, the next run exact.

The size cap is `RLIMIT_FSIZE` on the CLI's process (no root or mount needed): a write past
it fails with EFBIG ("File too large"), as a full disk fails with ENOSPC, at whatever file
the run is writing then (dlt's load files or the DuckDB file). SIGXFSZ is ignored in the
child so that the write fails instead of the process being killed.
"""

import resource
import signal
import subprocess

import pytest

from tests.close.utils import run_cli

from .common import assert_exact, cli_command, cli_env, cursors, loads_nothing_new

CAP_BYTES = 3 * 1024 * 1024


def capped() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (CAP_BYTES, CAP_BYTES))


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
@pytest.mark.parametrize("phase", ["first", pytest.param("incremental", marks=pytest.mark.soak)])
def test_a_disk_that_fills_while_loading(make_emulator, sync_env, phase: str) -> None:  # noqa: ANN001
    close = make_emulator(emails=1500, seed=71)
    if phase == "incremental":
        assert run_cli("sync", base_url=close.base_url)[0] == 0
        for email in close.emulator.all_emails()[:400]:  # enough new data to pass the cap
            close.emulator.create_email(lead_id=email["lead_id"], status="inbox",
                                        body_text="x" * 20_000)  # fmt: skip
    before = cursors()
    full = subprocess.run(
        cli_command(["sync"]), env=cli_env(close.base_url), preexec_fn=capped,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in full.stderr.splitlines() if line.strip()]
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr[:600]
    assert len(lines) == 1 and "no space left" in lines[0], full.stderr[-3000:]
    assert cursors() == before
    loads_nothing_new(close)  # the clean rerun (no cap) succeeds and is exact
    assert_exact(close)
