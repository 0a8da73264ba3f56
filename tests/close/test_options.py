"""Bad settings are one line on stderr before any request, and nothing changes."""

import pytest

from close_emulator import EmulatorServer

from .utils import run_cli, sync


@pytest.fixture
def close(make_emulator, sync_env) -> EmulatorServer:  # noqa: ANN001
    return make_emulator(emails=40, seed=3)


BAD = [
    ("WINDOW_DAYS", "0"),
    ("WINDOW_DAYS", "-2"),
    ("CONCURRENCY", "0"),
    ("CONCURRENCY", "abc"),
    ("CHUNK_EMAILS", "-1"),
    ("MAX_ATTEMPTS", "0"),
    ("REQUEST_TIMEOUT", "0"),
    ("START_DATE", "yesterday-ish"),
    ("START_DATE", "2030-13-01"),
    ("CONCURRENCY", "-3"),
    ("MAX_ATTEMPTS", "1.5"),
    ("REQUEST_TIMEOUT", "abc"),
    ("INCLUDE_BODIES", "maybe"),
]
CASES = [("sync", *bad) for bad in [*BAD, ("EVENT_RETENTION_DAYS", "-1")]]
CASES += [("backfill", *bad) for bad in BAD]  # the backfill reads no event log


@pytest.mark.parametrize("command, name, value", CASES)
def test_a_bad_setting_is_one_line_before_any_request(
    close: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    command: str,
) -> None:
    monkeypatch.setenv(f"SOURCES__CLOSE__{name}", value)
    args = (
        ["backfill", "--start", "2024-01-01", "--end", "2025-01-01"]
        if command == "backfill"
        else ["sync"]
    )
    code, _out, err = run_cli(*args, base_url=close.base_url)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and name.lower() in err, err
    assert [e for e in close.emulator.request_log.snapshot() if e.path.startswith("/api")] == []
    code, out, _err = run_cli("status")
    assert code == 0 and "no successful run yet" in out


def test_an_old_window_days_setting_is_ignored(
    close: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__CLOSE__WINDOW_DAYS", "7")
    assert "emails.total: 40" in sync(close.base_url)


@pytest.mark.parametrize("base_url", ["ftp://example.com/api/v1", "", "127.0.0.1:9/api/v1"])
def test_an_unusable_base_url_is_one_line_without_retries(
    close: EmulatorServer, monkeypatch: pytest.MonkeyPatch, base_url: str
) -> None:
    monkeypatch.setenv("SOURCES__CLOSE__BASE_URL", base_url)
    code, _out, err = run_cli("sync")
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "SOURCES__CLOSE__BASE_URL" in err, err
    code, out, _err = run_cli("status")
    assert code == 0 and "no successful run yet" in out
