"""The writer and loader settings of `pipelines/loading.py`, as a user may give them."""

import dlt
import pytest

from close_emulator import EmulatorServer
from pipelines.loading import DUCKDB_GLOBAL_CONFIG, DUCKDB_MEMORY_LIMIT, configure
from tests.close.utils import run_cli
from tests.faults.common import api_requests, one_line

ENV = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"


def test_duckdb_settings_given_as_json_text_keep_the_memory_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, '{"threads": 2}')
    configure()
    expected = {"memory_limit": DUCKDB_MEMORY_LIMIT, "threads": 2}  # theirs wins
    assert dlt.config.get(DUCKDB_GLOBAL_CONFIG, dict) == expected
    monkeypatch.setenv(ENV, '{"memory_limit": "300MB"}')
    configure()
    expected = {"memory_limit": "300MB", "threads": 1}
    assert dlt.config.get(DUCKDB_GLOBAL_CONFIG, dict) == expected


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_unreadable_duckdb_settings_are_one_line_before_any_request(
    make_emulator,  # noqa: ANN001
    sync_env,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    close: EmulatorServer = make_emulator(emails=10, seed=3)
    monkeypatch.setenv(ENV, "memory_limit=2GB")
    code, _out, err = run_cli("sync", base_url=close.base_url)
    assert code == 1 and "global_config ('memory_limit=2GB')" in one_line(err), err
    assert api_requests(close) == []
