"""A connect that is never answered (a blackholed address, a firewall dropping packets).

Without the internet: a loopback port whose accept queue is full drops every new SYN, as a
non-routable address does, so a connect to it times out. Before Close ever answered, that
is a wrong URL or a network down: one line at once. Later in a run it is retried.
"""

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from sources.close.client import CloseClient, CloseUnavailableError
from tests.close.utils import run_cli

from .common import one_line

FAST_CONNECT = (0.3, 5.0)  # (connect, read) timeouts of the test clients


@contextmanager
def listener() -> Iterator[socket.socket]:
    """A loopback socket listening with the smallest accept queue; nothing accepts on it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    try:
        yield server
    finally:
        server.close()


def base_url(server: socket.socket) -> str:
    return f"http://127.0.0.1:{server.getsockname()[1]}/api/v1"


@contextmanager
def queue_filled(server: socket.socket) -> Iterator[None]:
    """Connects until the kernel stops completing handshakes: from then on it drops SYNs.

    The stop is observed (a connect not made within the timeout), not assumed; if it came
    too early the client would connect and the test would fail, never pass by luck.
    """
    fillers: list[socket.socket] = []
    try:
        while True:
            filler = socket.create_connection(server.getsockname(), timeout=None)
            fillers.append(filler)
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(0.2)
            try:
                probe.connect(server.getsockname())
            except TimeoutError:
                break  # queue full: the probe's SYN was dropped
            finally:
                probe.close()
            assert len(fillers) < 64, "the accept queue never filled"
        yield
    finally:
        for filler in fillers:
            filler.close()


def test_an_unanswered_connect_before_any_answer_is_one_try() -> None:
    with listener() as server, queue_filled(server):
        url = base_url(server)
        client = CloseClient("api_x", url, timeout=FAST_CONNECT)
        with pytest.raises(CloseUnavailableError) as raised:
            client.get("/me/")
    message = str(raised.value)
    assert "connect timed out" in message and url in message
    assert "check SOURCES__CLOSE__BASE_URL and the network" in message
    assert client.stats.requests == 1 and client.stats.retries == 0


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)  # fails before loading
def test_an_unanswered_connect_fails_the_cli_with_one_line(
    sync_env,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the command's connect timeout is 10 s; the test's listener needs no more than 0.3
    monkeypatch.setattr("sources.close.CONNECT_TIMEOUT_S", FAST_CONNECT[0])
    with listener() as server, queue_filled(server):
        url = base_url(server)
        code, _out, err = run_cli("sync", base_url=url)
    line = one_line(err)
    assert code == 1 and "connect timed out" in line and url in line, err
    assert "SOURCES__CLOSE__BASE_URL" in line
    assert run_cli("status")[1].startswith("status: no successful run yet")


def test_an_unanswered_connect_later_in_a_run_is_retried() -> None:
    with listener() as server:
        answered = threading.Thread(target=answer_once, args=(server,))
        answered.start()
        client = CloseClient("api_x", base_url(server), FAST_CONNECT, 3, backoff_base_s=0.0)
        assert client.get("/me/") == {}
        answered.join()
        with queue_filled(server), pytest.raises(CloseUnavailableError) as raised:
            client.get("/me/")
    assert "failed 3 times in a row" in str(raised.value), raised.value
    assert "connect timed out" in str(raised.value)
    assert client.stats.requests == 4 and client.stats.retries == 2


def answer_once(server: socket.socket) -> None:
    """Accepts one connection and answers its request with `{}`; then accepts no more."""
    conn, _address = server.accept()
    with conn:
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\n{}"
        )


@pytest.fixture(autouse=True)
def _no_base_url_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_cli sets SOURCES__CLOSE__BASE_URL in os.environ; undo it after each test."""
    monkeypatch.delenv("SOURCES__CLOSE__BASE_URL", raising=False)
