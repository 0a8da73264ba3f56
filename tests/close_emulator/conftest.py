"""Fixtures for the emulator's own tests: emulators served over real HTTP on a free port."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from close_emulator import Emulator, EmulatorConfig, EmulatorServer

KEY = "test-key"


class Api:
    """A `requests.Session` bound to one emulator's base URL, authenticated with Basic auth."""

    def __init__(self, server: EmulatorServer, key: str | None = KEY) -> None:
        self.server = server
        self.base = server.base_url
        self.session = requests.Session()
        if key is not None:
            self.session.auth = (key, "")

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base + path, timeout=30, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.put(self.base + path, timeout=30, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.base + path, timeout=30, **kwargs)

    def emails(self, **params: Any) -> list[dict]:
        """Every email matching `params`, walking `_skip` pages of 100."""
        out: list[dict] = []
        skip = 0
        while True:
            response = self.get("/activity/email/", params={**params, "_skip": skip, "_limit": 100})
            assert response.status_code == 200, response.text
            page = response.json()
            out += page["data"]
            if not page["has_more"]:
                return out
            skip += 100

    def events(self, **params: Any) -> list[dict]:
        """Every event matching `params`, following `cursor_next` from `_cursor=''`."""
        out: list[dict] = []
        cursor = ""
        while True:
            response = self.get("/event/", params={**params, "_cursor": cursor})
            assert response.status_code == 200, response.text
            page = response.json()
            out += page["data"]
            cursor = page["cursor_next"]
            if not cursor:
                return out


def serve(server: EmulatorServer) -> EmulatorServer:
    """Like `server.start()`, but polling for shutdown every 20 ms instead of 500 ms, so that
    stopping a server does not cost half a second per test."""
    thread = threading.Thread(
        target=server.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    server._thread = thread  # what EmulatorServer.stop() joins
    return server


@pytest.fixture(scope="package")
def shared() -> Iterator[EmulatorServer]:
    """400 emails over 60 days, no rate limit; tests using it must not change it."""
    emulator = Emulator(EmulatorConfig(rate=0, history_days=60))
    emulator.generate(400, seed=3)
    with EmulatorServer(emulator) as srv:
        yield srv
    emulator.close()


@pytest.fixture()
def api(shared: EmulatorServer) -> Api:
    return Api(shared)


@pytest.fixture()
def fresh() -> Iterator[Callable[..., Api]]:
    """Starts private emulators (which a test may change) and stops them afterwards."""
    started: list[EmulatorServer] = []

    def start(emails: int = 200, seed: int = 1, **config: Any) -> Api:
        config.setdefault("rate", 0)
        emulator = Emulator(EmulatorConfig(**config))
        emulator.generate(emails, seed)
        server = serve(EmulatorServer(emulator))
        started.append(server)
        return Api(server)

    yield start
    for server in started:
        server.stop()
        server.emulator.close()


def sleep_until_fresh_window(api: Api, need: float) -> None:
    """Wait until at least `need` seconds are left in the current rate-limit window (read from a
    request to an otherwise unused endpoint group, with fractional reset values)."""
    response = api.get("/custom_field/window-probe/")
    reset = float(response.headers["RateLimit"].rsplit("reset=", 1)[1])
    if reset < need:
        time.sleep(reset + 0.01)
