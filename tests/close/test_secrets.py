"""The API key never reaches logs, errors, traces, pipeline files or the database."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DUCKDB_AND_SOAK_POSTGRES

from .test_crash import ROOT
from .utils import query

KEY = "api_SECRET_canary_7f3a91c2"


def run(base_url: str, *args: str, key: str = KEY) -> subprocess.CompletedProcess:
    env = dict(os.environ, SOURCES__CLOSE__API_KEY=key, SOURCES__CLOSE__BASE_URL=base_url,
               PYTHONPATH=str(ROOT), CLOSE_SYNC_LOG_LEVEL="DEBUG", RUNTIME__LOG_LEVEL="DEBUG")  # fmt: skip
    command = [sys.executable, "-m", "pipelines.close_emails", *args,
               "--destination", env["DESTINATION"], "--dataset", env["DATASET"],
               "--pipeline-name", env["PIPELINE_NAME"]]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def files_containing(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("destination", DUCKDB_AND_SOAK_POSTGRES, indirect=True)
def test_api_key_is_never_written_anywhere(make_emulator, sync_env) -> None:  # noqa: ANN001
    close = make_emulator(emails=120, seed=8, api_key=KEY)
    synced = run(close.base_url, "sync")
    assert synced.returncode == 0, synced.stderr[-2000:]
    failed = run(close.base_url, "sync", key=KEY + "x")  # a rejected key is not echoed back
    assert failed.returncode == 1 and "401" in failed.stderr
    for result in (synced, failed, run(close.base_url, "status")):
        assert KEY not in result.stdout + result.stderr
    workdir = Path(os.getcwd())
    assert files_containing(workdir, KEY.encode()) == []
    assert files_containing(Path(os.environ["DLT_DATA_DIR"]), KEY.encode()) == []
    states = query("SELECT state FROM {ds}._dlt_pipeline_state")
    assert states and all(KEY not in str(row["state"]) for row in states)
