"""The request trace the benchmark reads (`CLOSE_SYNC_REQUEST_TRACE`): a real sync under a
429 storm sends nothing into a wait it has read, as the client's own clock tells."""

import json
from pathlib import Path

import pytest

from bench.waits import client_requests_inside_waits
from close_emulator import EmulatorServer
from sources.close import client
from sources.close.trace import RequestTrace
from tests.close.utils import run_cli


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_sync_under_a_storm_sends_nothing_into_a_wait_it_has_read(
    make_emulator,  # noqa: ANN001
    sync_env,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    close: EmulatorServer = make_emulator(emails=900, seed=4)
    close.emulator.faults.set(storm_period_s=2, storm_duration_s=1)
    path = tmp_path / "requests.jsonl"
    monkeypatch.setattr(client, "TRACE", RequestTrace(str(path)))
    code, out, err = run_cli("sync", base_url=close.base_url)
    assert code == 0, err
    trace = [json.loads(line) for line in path.read_text().splitlines()]
    sent = int(next(line for line in out.splitlines() if line.startswith("api.requests:"))[14:])
    assert len(trace) == sent and all(line["seen"] >= line["sent"] for line in trace)
    throttled = [line for line in trace if line["status"] == 429]
    assert throttled and all(line["wait"] > 0 for line in throttled)  # the storm was met
    assert client_requests_inside_waits(trace) == 0
    assert set(trace[0]) <= {"group", "sent", "seen", "status", "wait"}  # nothing else kept
