"""`status --check [--max-age HOURS]`: exit codes, one line, no API key, no request to Close."""

import os
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.freshness import freshness
from pipelines.runner import make_pipeline

from ..close.utils import run_cli, sync


@pytest.fixture
def destination() -> str:
    return "duckdb"  # the check reads sync_runs and dlt's state, the same on every destination


def pipeline():  # noqa: ANN201
    return make_pipeline(os.environ["PIPELINE_NAME"], os.environ["DESTINATION"], os.environ["DATASET"])  # fmt: skip


def test_freshness_check_exit_codes(make_emulator, sync_env, monkeypatch) -> None:  # noqa: ANN001
    close = make_emulator(emails=25)
    code, out, err = run_cli("status", "--check")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "no successful sync" in err

    sync(close.base_url)
    monkeypatch.delenv("SOURCES__CLOSE__API_KEY")
    close.emulator.request_log.clear()
    code, out, err = run_cli("status", "--check")
    assert code == 0 and err == "" and out.startswith("fresh: ") and out.count("\n") == 1
    code, out, err = run_cli("status", "--check", "--max-age", "0.000001")
    assert code == 1 and out == "" and err.startswith("stale: ") and err.count("\n") == 1
    assert close.emulator.request_log.counts()["total"] == 0  # Close was not asked

    now = datetime.now(UTC)
    assert freshness(pipeline(), 26, now + timedelta(hours=25))[0] is False
    problem, line = freshness(pipeline(), 26, now + timedelta(hours=27))
    assert problem and line.startswith("stale: ") and "--max-age 26 h" in line
    problem, line = freshness(pipeline(), 24 * 40, now + timedelta(days=31))
    assert problem and line.startswith("event log gap: ") and "30-day" in line

    code, _, err = run_cli("status", "--check", "--max-age", "0")
    assert code == 2 and "invalid hours" in err  # a usage error


def test_a_failed_run_after_a_success_keeps_the_check_on_the_success(
    make_emulator, sync_env
) -> None:  # noqa: ANN001
    close = make_emulator(emails=10, api_key="the-right-key")
    os.environ["SOURCES__CLOSE__API_KEY"] = "the-right-key"
    sync(close.base_url)
    os.environ["SOURCES__CLOSE__API_KEY"] = "a-revoked-key"
    assert run_cli("sync", base_url=close.base_url)[0] == 1
    code, out, _ = run_cli("status", "--check", "--max-age", "1")
    assert code == 0 and "fresh" in out
    problem, line = freshness(pipeline(), 1, datetime.now(UTC) + timedelta(hours=2))
    assert problem and "stale" in line
