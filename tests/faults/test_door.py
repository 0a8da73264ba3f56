"""Every wrong setting and every unusable destination is one line before anything changes."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from close_emulator import EmulatorServer
from sources.close.client import CloseClient, CloseUnavailableError
from tests.close.utils import run_cli
from tests.conftest import _PG_REASON, POSTGRES_DSN

from .common import api_requests, cli, one_line

NOTHING_YET = "status: no successful run yet"


@pytest.fixture
def close(make_emulator, sync_env) -> EmulatorServer:  # noqa: ANN001
    return make_emulator(emails=30, seed=5)


def assert_untouched(close: EmulatorServer) -> None:
    """No API request was made and `status` (which must not crash) says nothing was loaded."""
    assert api_requests(close) == []
    code, out, err = run_cli("status")
    assert code == 0 and out.startswith(NOTHING_YET), (code, out, err)


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
@pytest.mark.parametrize(
    "setting, expected",
    [
        ({"DESTINATION__DUCKDB__CREDENTIALS": "{tmp}/close.duckdb"}, "named like the dataset"),
        ({"DESTINATION__DUCKDB__CREDENTIALS": "{tmp}/CLOSE.duckdb"}, "named like the dataset"),
        ({"DESTINATION__DUCKDB__CREDENTIALS": "{tmp}/no/such/dir/w.duckdb"}, "does not exist"),
        ({"DESTINATION__DUCKDB__CREDENTIALS": "{tmp}"}, "is a folder"),
        (
            {
                "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG": '{{"checkpoint_on_shutdown": false}}'
            },
            'DuckDB setting checkpoint_on_shutdown=False (destination.duckdb.credentials.global_config) cannot be used: Catalog Error: unrecognized configuration parameter "checkpoint_on_shutdown"',
        ),
        (
            {"DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG": '{{"memory_limit": "lots"}}'},
            "DuckDB setting memory_limit='lots' (destination.duckdb.credentials.global_config) cannot be used",
        ),
        (
            {"DESTINATION__DUCKDB__CREDENTIALS__LOCAL_CONFIG": '{{"no_such_setting": 1}}'},
            "DuckDB setting no_such_setting=1 (destination.duckdb.credentials.local_config) cannot be used",
        ),
    ],
    ids=[
        "file-named-like-dataset",
        "same-name-other-case",
        "missing-folder",
        "path-is-a-folder",
        "unknown-global-setting",
        "bad-global-value",
        "unknown-local-setting",
    ],
)
def test_an_unusable_duckdb_file_or_setting_is_one_line_before_any_request(
    close: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    setting: dict[str, str],
    expected: str,
) -> None:
    for key, value in setting.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    for command in (["sync"], ["backfill", "--start", "2024-01-01", "--end", "2024-02-01"]):
        code, _out, err = run_cli(*command, base_url=close.base_url)
        assert code == 1 and expected in one_line(err), err
    assert api_requests(close) == []
    code, out, err = run_cli("status")  # status says the same, it does not crash
    assert code == 1 and expected in one_line(err)


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_pipeline_named_like_the_dataset_leaves_no_pending_package(
    close: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the default DuckDB file is `<pipeline-name>.duckdb`: `--pipeline-name close` collides
    monkeypatch.delenv("DESTINATION__DUCKDB__CREDENTIALS")
    monkeypatch.setenv("PIPELINE_NAME", "close")
    result = cli(close.base_url, ["sync"])
    assert result.returncode == 1 and "named like the dataset" in one_line(result.stderr)
    assert api_requests(close) == []
    pending = Path(os.environ["DLT_DATA_DIR"]) / "pipelines" / "close" / "normalize"
    assert not pending.exists() or not any(pending.rglob("*.parquet"))
    status = cli(close.base_url, ["status"])
    assert status.returncode == 1 and "named like the dataset" in one_line(status.stderr)


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_duckdb_file_locked_by_another_process_is_one_line(
    close: EmulatorServer, tmp_path: Path
) -> None:
    path = os.environ["DESTINATION__DUCKDB__CREDENTIALS"]
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,sys; c=duckdb.connect({path!r}); print('held',"
         " flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, _out, err = run_cli("sync", base_url=close.base_url)
        line = one_line(err)
        assert code == 1 and "locked by another process" in line and str(holder.pid) in line
        assert [e for e in api_requests(close) if e.path.endswith("/email/")] == []
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)
    assert_untouched(close)


PG_HOST = POSTGRES_DSN.split("@")[-1].split("/")[0]
PG_CASES = [
    (f"postgresql://nobody_{os.getpid()}:pw@{PG_HOST}/postgres", "unknown role"),
    (f"postgresql://postgres:pw@{PG_HOST}/no_such_db_{os.getpid()}", "database unknown"),
    ("postgresql://postgres:pw@127.0.0.1:9/postgres", "destination unreachable"),
]


@pytest.mark.parametrize("destination", ["postgres"], indirect=True)
@pytest.mark.skipif(bool(_PG_REASON), reason=_PG_REASON or "")
@pytest.mark.parametrize("dsn, expected", PG_CASES, ids=["bad-role", "unknown-db", "refused"])
def test_a_postgres_that_refuses_is_one_line_saying_which(
    close: EmulatorServer, monkeypatch: pytest.MonkeyPatch, dsn: str, expected: str
) -> None:
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", dsn)
    code, _out, err = run_cli("sync", base_url=close.base_url)
    line = one_line(err)
    assert code == 1 and expected in line and ":pw@" not in line
    assert [e for e in api_requests(close) if e.path.endswith("/email/")] == []


USAGE = [
    ["sync", "--destination", "nowhere"],
    ["backfill", "--start", "2024-13-01", "--end", "2024-02-01"],
    ["backfill", "--start", "2024-02-01", "--end", "2024-01-01"],
    ["backfill", "--start", "2024-01-01"],
    ["sync", "--no-such-flag"],
    ["sync", "--dataset="],
    ["status", "--pipeline-name", " "],
    ["frobnicate"],
]


@pytest.mark.parametrize("args", USAGE, ids=[" ".join(a) for a in USAGE])
def test_a_usage_error_exits_2_before_anything(close: EmulatorServer, args: list[str]) -> None:
    code, _out, err = run_cli(*args, base_url=close.base_url)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("python -m pipelines.close_emails"), err
    assert_untouched(close)


def test_a_closed_port_is_reported_after_one_try() -> None:
    client = CloseClient("api_x", "http://127.0.0.1:9/api/v1")
    with pytest.raises(CloseUnavailableError, match="connection refused"):
        client.get("/activity/email/")
    assert client.stats.requests == 1 and client.stats.retries == 0
