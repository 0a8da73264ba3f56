"""The HTTP client against the emulator: waits Close asks for, retries, clear failures."""

import http.server
import threading

import pytest

from close_emulator import EmulatorServer
from sources.close.client import CloseApiError, CloseAuthError, CloseClient, CloseUnavailableError

from .utils import assert_warehouse_equals, run_cli, sync

KEY = "api_client_test_key"
LIST = "/activity/email/"


@pytest.fixture
def close(make_emulator) -> EmulatorServer:  # noqa: ANN001
    return make_emulator(emails=50, seed=4)


def client_for(close: EmulatorServer, **options: object) -> CloseClient:
    return CloseClient(KEY, close.base_url, **options)  # type: ignore[arg-type]


def api_log(close: EmulatorServer) -> list:
    return [
        entry for entry in close.emulator.request_log.snapshot() if entry.path.startswith("/api")
    ]


@pytest.mark.parametrize(
    "signal, expected_wait",
    [
        ("storm_ratelimit_header", 2.0),
        ("storm_retry_after", 2.0),
        ("storm_body_rate_reset", 1.5),
        (None, 2.0),
    ],  # fmt: skip
    ids=["RateLimit-header", "Retry-After", "body-rate_reset", "no-signal-default"],
)
def test_429_waits_what_close_asks_and_never_retries_sooner(
    close: EmulatorServer, signal: str | None, expected_wait: float
) -> None:
    switches = {s: s == signal for s in
                ("storm_ratelimit_header", "storm_retry_after", "storm_body_rate_reset")}  # fmt: skip
    close.emulator.faults.set(storm_next=2, storm_reset_seconds=1.5, **switches)
    client = client_for(close)
    page = client.get(LIST, {"_limit": 5})
    assert len(page["data"]) == 5
    log = api_log(close)
    assert [e.status for e in log] == [429, 429, 200]  # no early retry was punished
    for before, after in zip(log, log[1:], strict=False):
        assert after.time - before.time >= expected_wait - 0.05, (before, after)
    assert client.stats.throttled == 2


def test_paces_itself_from_the_ratelimit_header(make_emulator) -> None:  # noqa: ANN001
    close = make_emulator(emails=50, rate=4)
    client = client_for(close)
    for _ in range(10):
        client.get(LIST, {"_limit": 1})
    assert [e.status for e in api_log(close)] == [200] * 10
    assert client.stats.throttled == 0 and client.stats.rate_wait_s > 0


@pytest.mark.parametrize(
    "fault",
    [
        {"error_next": 3, "error_status": 503},
        {"error_next": 2, "error_status": 502, "html_error_fraction": 1.0},
        {"drop_next": 2},
        {"truncate_next": 2},
        {"stall_next": 1, "stall_seconds": 3.0},
    ],  # fmt: skip
    ids=["503-burst", "502-html", "dropped-connections", "truncated-bodies", "stall"],
)
def test_transient_faults_are_retried(close: EmulatorServer, fault: dict) -> None:
    close.emulator.faults.set(**fault)
    client = client_for(close, timeout=(2.0, 1.0), backoff_base_s=0.05)
    page = client.get(LIST, {"_limit": 3})
    assert len(page["data"]) == 3
    assert client.stats.retries == max(fault.get(k, 0) for k in
                                       ("error_next", "drop_next", "truncate_next", "stall_next"))  # fmt: skip


def test_retries_exhausted_is_one_clear_error(close: EmulatorServer) -> None:
    close.emulator.faults.set(error_next=100, error_status=500)
    client = client_for(close, max_attempts=3, backoff_base_s=0.01)
    with pytest.raises(CloseUnavailableError) as failure:
        client.get(LIST)
    message = str(failure.value)
    assert "failed 3 times" in message and "\n" not in message and KEY not in message


def test_bad_key_fails_at_once(make_emulator) -> None:  # noqa: ANN001
    close = make_emulator(emails=5, api_key="right")
    with pytest.raises(CloseAuthError, match="401"):
        CloseClient("wrong", close.base_url).get(LIST)
    assert len(api_log(close)) == 1


def test_unreachable_api_fails_the_cli_with_one_line(sync_env) -> None:  # noqa: ANN001
    # a closed port before Close ever answered is a wrong URL: said at once, not retried
    code, out, err = run_cli("sync", base_url="http://127.0.0.1:9/api/v1")
    assert code == 1
    assert err.count("\n") == 1 and "connection refused" in err and "Traceback" not in err
    assert "SOURCES__CLOSE__BASE_URL" in err
    assert run_cli("status")[1].startswith("status: no successful run yet")


def test_missing_api_key_fails_the_cli_with_one_line(sync_env, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("SOURCES__CLOSE__API_KEY")
    code, _out, err = run_cli("sync", base_url="http://127.0.0.1:9/api/v1")
    assert code == 1 and err.count("\n") == 1 and "SOURCES__CLOSE__API_KEY" in err


def test_sync_survives_429_storms_and_5xx_bursts(make_emulator, sync_env) -> None:  # noqa: ANN001
    close = make_emulator(emails=1500, seed=9)
    close.emulator.faults.set(error_rate=0.2, error_next=2, storm_next=3, storm_reset_seconds=1.0)
    out = sync(close.base_url)
    close.emulator.faults.reset()
    assert "api.throttled_429: 3" in out
    assert "api.retries: 0" not in out
    assert_warehouse_equals(close.emulator.all_emails())


class HtmlPage(http.server.BaseHTTPRequestHandler):
    """A captive portal or a web site at the configured URL: 200 with an HTML page."""

    def do_GET(self) -> None:  # noqa: N802
        body = b"<html><body>Welcome</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_an_html_200_is_not_retried() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HtmlPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = CloseClient(KEY, f"http://127.0.0.1:{server.server_port}/api/v1")
        with pytest.raises(CloseApiError, match="HTML page"):
            client.get(LIST)
        assert client.stats.requests == 1 and client.stats.retries == 0
    finally:
        server.shutdown()


@pytest.mark.parametrize("base_url", ["htp://127.0.0.1:9/api/v1", "127.0.0.1:9/api/v1", "http://"])
def test_a_malformed_base_url_is_not_retried(base_url: str) -> None:
    client = CloseClient(KEY, base_url)
    with pytest.raises(CloseApiError, match="cannot send") as failure:
        client.get(LIST)
    assert client.stats.retries == 0 and "\n" not in str(failure.value)


def test_a_4xx_other_than_429_is_not_retried(close: EmulatorServer) -> None:
    client = client_for(close)
    with pytest.raises(CloseApiError, match="400"):
        client.get(LIST, {"_limit": 1000})
    assert [e.status for e in api_log(close)] == [400]


def test_answered_time_is_the_latest_date_and_asks_close_only_before_any_answer(
    close: EmulatorServer,
) -> None:
    """The change scan's cursor comes from Close's clock without a request of its own once
    Close has answered, and is never later than Close's now (`Date` has whole seconds)."""
    client = client_for(close)
    first = client.answered_time()  # nothing answered yet: one `/me/` request tells
    assert [entry.path for entry in api_log(close)] == ["/api/v1/me/"]
    client.get(LIST, {"_limit": 1})
    before = len(api_log(close))
    answered = client.answered_time()
    assert len(api_log(close)) == before  # no request of its own
    assert first <= answered <= close.emulator.clock.now()
    assert answered == client.last_server_time()
