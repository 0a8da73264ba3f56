"""Secrets never leave: not in output, logs, dlt's traces and state, tables or errors.

Also: `.dlt/secrets.toml` is git-ignored, and every server the tests start listens on the
loopback interface only.
"""

import os
import socket
import subprocess
from pathlib import Path

import pytest

from close_emulator import EmulatorServer
from close_emulator.testing import EmulatorProcess
from tests.close.utils import query
from tests.conftest import _PG_REASON, POSTGRES_DSN

from .common import ROOT, cli

KEY = "api_PRIVACY_canary_93be1d"
PASSWORD = "pw_PRIVACY_canary_5e0c"  # the test server trusts any password: a canary is safe
LOUD = {"CLOSE_SYNC_LOG_LEVEL": "DEBUG", "RUNTIME__LOG_LEVEL": "DEBUG"}


def files_containing(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def dsn_with(password: str, database: str = "postgres") -> str:
    return (
        f"postgresql://postgres:{password}@{POSTGRES_DSN.split('@')[-1].split('/')[0]}/{database}"
    )


def assert_nowhere(secret: str, runs: list[subprocess.CompletedProcess], tables: bool) -> None:
    for run in runs:
        assert secret not in run.stdout + run.stderr, run.args
    assert files_containing(Path(os.getcwd()), secret.encode()) == []
    assert files_containing(Path(os.environ["DLT_DATA_DIR"]), secret.encode()) == []
    if tables:
        for table in ("_dlt_pipeline_state", "_dlt_loads", "emails"):
            rows = query(f"SELECT * FROM {{ds}}.{table}")
            assert rows and secret not in repr(rows), table


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)  # the key path is the same
def test_the_api_key_stays_secret_after_good_and_failing_runs(
    make_emulator,
    sync_env,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=60, seed=9, api_key=KEY)
    env = {**LOUD, "SOURCES__CLOSE__API_KEY": KEY}
    good = cli(close.base_url, ["sync"], **env)
    assert good.returncode == 0, good.stderr[-2000:]
    close.emulator.faults.set(error_rate=1.0, path_prefix="/api/v1/activity/email")
    retries_out = cli(close.base_url, ["sync"], **env, SOURCES__CLOSE__MAX_ATTEMPTS="2")
    close.emulator.faults.reset()
    close.emulator.faults.set(unauthorized_after=2)
    revoked = cli(close.base_url, ["sync"], **env)
    close.emulator.faults.reset()
    bad_setting = cli(close.base_url, ["sync"], **env, SOURCES__CLOSE__CONCURRENCY="x")
    killed = cli(close.base_url, ["sync"], **env, CLOSE_SYNC_KILL_AT="load:1:1:TERM")
    assert [r.returncode for r in (retries_out, revoked, bad_setting, killed)] == [1, 1, 1, 143]
    assert_nowhere(KEY, [good, retries_out, revoked, bad_setting, killed], tables=True)


@pytest.mark.parametrize("destination", ["postgres"], indirect=True)
@pytest.mark.skipif(bool(_PG_REASON), reason=_PG_REASON or "")
def test_the_database_password_stays_secret(
    make_emulator,
    sync_env,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=60, seed=10)
    good = cli(
        close.base_url, ["sync"], **LOUD, DESTINATION__POSTGRES__CREDENTIALS=dsn_with(PASSWORD)
    )
    assert good.returncode == 0, good.stderr[-2000:]
    unknown_db = cli(
        close.base_url,
        ["sync"],
        **LOUD,
        DESTINATION__POSTGRES__CREDENTIALS=dsn_with(PASSWORD, "no_such_db_x"),
    )
    refused = cli(
        close.base_url,
        ["status"],
        **LOUD,
        DESTINATION__POSTGRES__CREDENTIALS=f"postgresql://postgres:{PASSWORD}@127.0.0.1:9/x",
    )
    assert unknown_db.returncode == 1 and refused.returncode == 1, unknown_db.stderr[-2000:]
    assert_nowhere(PASSWORD, [good, unknown_db, refused], tables=True)  # fmt: skip


def test_secrets_toml_is_git_ignored() -> None:
    checked = subprocess.run(
        ["git", "check-ignore", "-q", ".dlt/secrets.toml"], cwd=ROOT, capture_output=True
    )
    assert checked.returncode == 0, "add .dlt/secrets.toml to .gitignore"


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1


def test_every_test_server_listens_on_loopback_only(make_emulator) -> None:  # noqa: ANN001
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("no /proc/net/tcp on this system to read listening sockets from")
    in_process: EmulatorServer = make_emulator(emails=5)
    assert listening_addresses(in_process.port) <= LOOPBACK
    assert listening_addresses(in_process.port)
    with EmulatorProcess(["--emails", "5"]) as process:  # the CLI's defaults, as the demo runs
        port = int(process.base_url.split(":")[2].split("/")[0])
        assert listening_addresses(port) and listening_addresses(port) <= LOOPBACK
    for dsn_host in (POSTGRES_DSN.split("@")[-1].split("/")[0].split(":")[0],):
        assert socket.gethostbyname(dsn_host).startswith("127."), dsn_host
