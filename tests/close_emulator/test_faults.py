"""Injected faults: latency, jitter, 5xx (JSON and HTML), drops, stalls, truncation, 429 storms,
and `path_prefix`."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import pytest
import requests

from .conftest import Api

SERVER_ERROR = {"error": "Internal Server Error"}


@pytest.fixture()
def close(fresh) -> Api:
    return fresh(emails=30)


def timed(close: Api, path: str = "/me/", **kwargs) -> tuple[float, requests.Response]:
    started = time.perf_counter()
    response = close.get(path, **kwargs)
    return time.perf_counter() - started, response


def test_latency_and_jitter(close: Api) -> None:
    faults = close.server.emulator.faults
    baseline, _ = timed(close)
    faults.set(latency_ms=250)
    took, response = timed(close)
    assert response.status_code == 200 and took >= 0.25
    assert took < 0.25 + baseline + 0.5
    admin_started = time.perf_counter()
    close.server.admin.faults()  # the admin API is never delayed
    assert time.perf_counter() - admin_started < 0.2
    faults.set(latency_ms=0, jitter_ms=300, seed=11)
    took = [timed(close)[0] for _ in range(5)]
    assert all(0 <= t < 0.3 + 0.4 for t in took)
    assert max(took) - min(took) > 0.03  # random, not fixed
    assert sum(took) < 2.5


def test_error_next_json_then_recovers(close: Api) -> None:
    close.server.admin.set_faults(error_next=2)
    first, second, third = (close.get("/activity/email/") for _ in range(3))
    assert [r.status_code for r in (first, second, third)] == [503, 503, 200]
    assert first.json() == SERVER_ERROR
    assert first.headers["Content-Type"].startswith("application/json")
    assert "RateLimit" in first.headers
    close.server.admin.set_faults(error_next=1, error_status=504)
    assert close.get("/me/").status_code == 504
    assert close.server.admin.faults()["error_next"] == 0


def test_error_rate_codes_and_html_pages(close: Api) -> None:
    faults = close.server.emulator.faults
    faults.set(error_rate=1.0, error_codes=[500, 502], seed=3)
    statuses = [close.get("/me/") for _ in range(12)]
    assert {r.status_code for r in statuses} == {500, 502}
    assert all(r.json() == SERVER_ERROR for r in statuses)
    faults.set(html_error_fraction=1.0, error_codes=[502])
    page = close.get("/activity/email/")
    assert page.status_code == 502
    assert page.headers["Content-Type"].startswith("text/html")
    assert "<html>" in page.text and "502 Bad Gateway" in page.text
    with pytest.raises(requests.JSONDecodeError):
        page.json()
    faults.set(html_error_fraction=0.5, error_codes=[503])
    kinds = {close.get("/me/").headers["Content-Type"].split(";")[0] for _ in range(20)}
    assert kinds == {"text/html", "application/json"}


def test_error_rate_is_reproducible_for_a_seed(close: Api) -> None:
    faults = close.server.emulator.faults

    def run() -> list[int]:
        faults.reset()
        faults.set(error_rate=0.4, seed=42)
        return [close.get("/me/").status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert 200 in first and set(first) - {200} <= {500, 502, 503, 504} and len(set(first)) > 1


def test_drop_closes_the_connection_without_an_answer(close: Api) -> None:
    close.server.admin.set_faults(drop_next=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(close.base + "/me/", auth=("k", ""), timeout=5)
    assert close.get("/me/").status_code == 200
    log = close.server.emulator.request_log[-2:]
    assert [entry.status for entry in log] == [0, 200]
    close.server.emulator.faults.set(drop_rate=1.0)
    for _ in range(3):
        with pytest.raises(requests.ConnectionError):
            requests.get(close.base + "/me/", auth=("k", ""), timeout=5)
    assert close.server.admin.faults()["drop_rate"] == 1.0  # admin still answers


def test_stall_beats_a_client_timeout(close: Api) -> None:
    faults = close.server.emulator.faults
    faults.set(stall_next=1, stall_seconds=1.5)
    started = time.perf_counter()
    with pytest.raises(requests.ReadTimeout):
        requests.get(close.base + "/me/", auth=("k", ""), timeout=0.3)
    assert time.perf_counter() - started < 1.0
    took, response = timed(close)  # the next request is not stalled
    assert response.status_code == 200 and took < 0.5
    faults.set(stall_rate=1.0, stall_seconds=0.4)
    took, response = timed(close)  # a patient client gets the answer late
    assert response.status_code == 200 and took >= 0.4
    assert response.json()["id"] == close.server.emulator.me()["id"]


def test_truncated_body(close: Api) -> None:
    close.server.emulator.faults.set(truncate_next=1)
    url = urlsplit(close.base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    conn.request("GET", url.path + "/activity/email/", headers={"Authorization": "Bearer k"})
    response = conn.getresponse()
    assert response.status == 200
    length = int(response.headers["Content-Length"])
    with pytest.raises(http.client.IncompleteRead) as info:
        response.read()
    assert len(info.value.partial) == length // 2
    conn.close()
    full = close.get("/activity/email/")
    assert len(full.content) == length
    assert info.value.partial == full.content[: length // 2]
    # what a requests client sees
    close.server.emulator.faults.set(truncate_rate=1.0)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(close.base + "/activity/email/", auth=("k", ""), timeout=5)


def storm_signals(response: requests.Response) -> dict[str, object]:
    error = response.json()["error"]
    return {
        "ratelimit": response.headers.get("RateLimit"),
        "retry_after": response.headers.get("Retry-After"),
        "rate_reset": error.get("rate_reset"),
    }


def test_storm_next_and_early_retries(close: Api) -> None:
    faults = close.server.emulator.faults
    close.server.emulator.set_config(rate=10)
    faults.set(storm_next=2, storm_reset_seconds=0.3)
    first = close.get("/activity/email/")
    assert first.status_code == 429
    assert storm_signals(first) == {
        "ratelimit": "limit=10, remaining=0, reset=1",
        "retry_after": "1",
        "rate_reset": 0.3,
    }
    assert first.json()["error"]["rate_limit_type"] == "key"
    early = close.get("/activity/email/")  # sooner than 0.3 s later: also 429, not counted
    assert early.status_code == 429
    time.sleep(0.35)
    assert close.get("/activity/email/").status_code == 429  # the second of storm_next=2
    time.sleep(0.35)
    assert close.get("/activity/email/").status_code == 200
    assert faults.as_dict()["storm_next"] == 0
    close.server.emulator.set_config(rate_fractional_reset=True)
    faults.set(storm_next=1, storm_reset_seconds=0.25)
    assert storm_signals(close.get("/me/"))["ratelimit"] == "limit=10, remaining=0, reset=0.250"


@pytest.mark.parametrize(
    "switch", ["storm_ratelimit_header", "storm_retry_after", "storm_body_rate_reset"]
)
def test_storm_signals_switch_off_one_at_a_time(close: Api, switch: str) -> None:
    close.server.emulator.faults.set(storm_next=1, storm_reset_seconds=0.05, **{switch: False})
    response = close.get("/activity/email/")
    assert response.status_code == 429
    signals = storm_signals(response)
    off = {
        "storm_ratelimit_header": "ratelimit",
        "storm_retry_after": "retry_after",
        "storm_body_rate_reset": "rate_reset",
    }[switch]
    assert signals[off] is None
    assert all(value is not None for name, value in signals.items() if name != off)
    assert response.json()["error"]["message"]
    time.sleep(0.06)
    assert close.get("/activity/email/").status_code == 200


def test_path_prefix_limits_faults(close: Api) -> None:
    faults = close.server.emulator.faults
    faults.set(path_prefix="/api/v1/event/", error_next=2, latency_ms=200)
    took, me = timed(close)
    assert me.status_code == 200 and took < 0.2
    assert close.get("/activity/email/").status_code == 200
    took, event = timed(close, "/event/")
    assert event.status_code == 503 and took >= 0.2
    assert close.get("/event", params={"_limit": 1}).status_code == 503  # normalized path
    assert close.get("/event/").status_code == 200
    faults.set(path_prefix=None, error_next=1, latency_ms=0)
    assert close.get("/me/").status_code == 503


def test_faults_settings_over_http(close: Api) -> None:
    admin = close.server.admin
    state = admin.set_faults(error_rate=0.25, html_error_fraction=0.5, seed=9)
    assert state["error_rate"] == 0.25 and state["seed"] == 9
    assert {"drift_pages_seen", "drift_done", "storm_next", "path_prefix"} <= set(state)
    assert admin.faults() == state
    with pytest.raises(ValueError, match="unknown fault keys: bogus"):
        admin.set_faults(bogus=1)
    with pytest.raises(ValueError):
        admin.set_faults(error_rate=-1)
    reset = admin.reset_faults()
    assert reset["error_rate"] == 0 and reset["seed"] == 0 and reset["drift_done"] is None
    assert close.server.emulator.faults.as_dict() == reset


# --- periodic storm --------------------------------------------------------------------------------


def test_periodic_storm_announces_the_wait_until_its_end(close: Api) -> None:
    emulator = close.server.emulator
    emulator.set_config(rate=10, rate_fractional_reset=True)
    # a long quiet part (2.5 s), so that the request after the storm lands in it
    emulator.faults.set(storm_period_s=3, storm_duration_s=0.5, latency_ms=100)
    stormed = close.get("/activity/email/")
    assert stormed.status_code == 429
    signals = storm_signals(stormed)
    reset = float(str(signals["ratelimit"]).rsplit("reset=", 1)[1])
    # the wait counts from the answer, made after the 100 ms latency
    assert 0 < float(signals["rate_reset"]) <= 0.4 and abs(reset - signals["rate_reset"]) < 0.01  # type: ignore[arg-type]
    assert str(signals["ratelimit"]).startswith("limit=10, remaining=0, ")
    assert signals["retry_after"] == "1"
    entry = emulator.request_log[-1]
    assert entry.status == 429 and entry.wait == 1.0  # Retry-After is the longest signal
    assert entry.time <= entry.answered
    time.sleep(float(signals["rate_reset"]) + 0.05)  # type: ignore[arg-type]
    calm = close.get("/activity/email/")
    assert calm.status_code == 200  # outside the storm the normal rate limit applies
    assert emulator.request_log[-1].wait is None


def test_periodic_storm_hits_every_group_and_whole_second_resets(close: Api) -> None:
    emulator = close.server.emulator
    emulator.faults.set(storm_period_s=60, storm_duration_s=2.5)
    for path in ("/activity/email/", "/me/", "/event/"):
        response = close.get(path)
        assert response.status_code == 429
        signals = storm_signals(response)
        assert str(signals["ratelimit"]).endswith("reset=3")  # ceil of the ~2.5 s left
        assert signals["retry_after"] == "3"
        assert 2 < float(signals["rate_reset"]) <= 2.5  # type: ignore[arg-type]
    emulator.faults.set(storm_duration_s=0)  # off
    assert close.get("/me/").status_code == 200


def test_periodic_storm_settings(close: Api) -> None:
    admin = close.server.admin
    with pytest.raises(ValueError, match="shorter than storm_period_s"):
        admin.set_faults(storm_period_s=2, storm_duration_s=2)
    state = admin.set_faults(storm_period_s=5, storm_duration_s=2)
    assert (state["storm_period_s"], state["storm_duration_s"]) == (5.0, 2.0)
    assert admin.reset_faults()["storm_period_s"] == 0
    assert close.get("/me/").status_code == 200
