"""The HTTP layer: a threading HTTP/1.1 server whose handler runs each API request through
faults, authentication and rate limiting before the endpoint, and logs it."""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import sys
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import admin, api
from .api import ApiError, Request, Response, json_response
from .emulator import Emulator, LogEntry
from .faults import Decision
from .ratelimit import Verdict, format_reset

RATE_MESSAGE = "API call count exceeded for this period"


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer (daemon threads) that knows its emulator."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, emulator: Emulator, address: tuple[str, int], log_requests: bool = False
    ) -> None:
        self.emulator = emulator
        self.log_requests = log_requests
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away; report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def api_key(headers: Any) -> str | None:
    """The API key from `Authorization: Basic base64(key:)` or `Bearer key`, or None."""
    scheme, _, credentials = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def announced_wait(response: Response) -> float | None:
    """The longest wait a 429 announces in `Retry-After`, `RateLimit … reset=` and the body's
    `error.rate_reset` (a client honouring any one of them waits at most this long)."""
    waits: list[float] = []
    if "Retry-After" in response.headers:
        waits.append(float(response.headers["Retry-After"]))
    if "RateLimit" in response.headers:
        waits.append(float(response.headers["RateLimit"].rsplit("reset=", 1)[1]))
    if isinstance(response.body, bytes):
        error = json.loads(response.body or b"{}").get("error")
        if isinstance(error, dict) and "rate_reset" in error:
            waits.append(float(error["rate_reset"]))
    return max(waits) if waits else None


def _flat(value: Any) -> str:
    """A `_params` value as a query-string value (lists become comma-separated)."""
    if isinstance(value, list):
        return ",".join(_flat(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Handler(BaseHTTPRequestHandler):
    """Routes `/_emulator/` to the admin API and everything else through the Close API."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: EmulatorHTTPServer

    def do_GET(self) -> None:  # the do_* names are http.server's
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header on the emulator's clock, like Close's own clock, so that a
        client taking "now" from Close sees the time move when a test advances the clock."""
        return email.utils.formatdate(
            self.server.emulator.clock.epoch() if timestamp is None else timestamp, usegmt=True
        )

    def log_message(self, format: str, *args: Any) -> None:
        """Access log on stderr, only with `log_requests`."""
        if self.server.log_requests:
            super().log_message(format, *args)

    def _handle(self) -> None:
        emu = self.server.emulator
        arrival = emu.clock.epoch()
        url = urlsplit(self.path)
        params: dict[str, str] = {}
        for key, value in parse_qsl(url.query, keep_blank_values=True):
            params.setdefault(key, value)
        try:
            body = self._read_body()
        except ValueError:
            self._send(json_response(400, {"error": "Bad request body."}))
            return
        if url.path.startswith("/_emulator"):
            self._send(admin.handle(emu, self.command, url.path, params, body))
        else:
            self._api(emu, arrival, url.path, params, body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                chunk = self.rfile.read(size + 2)[:size]
                if not size:
                    return b"".join(chunks)
                chunks.append(chunk)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _api(
        self, emu: Emulator, arrival: float, raw_path: str, params: dict[str, str], body: bytes
    ) -> None:
        method = self.command
        override = self.headers.get("X-HTTP-Method-Override", "")
        if method == "POST" and override.upper() == "GET":
            method = "GET"
            try:
                extra = json.loads(body or b"{}").get("_params") or {}
                params.update({key: _flat(value) for key, value in extra.items()})
            except (ValueError, AttributeError):
                pass
        path = api.normalize(raw_path)
        route = api.resolve(method, path)
        entry = LogEntry(arrival, self.command, raw_path, params, 0, route.group)
        config = emu.config
        decision = emu.faults.decide() if emu.faults.applies(path) else Decision()
        if decision.delay:
            time.sleep(decision.delay)
        periodic = emu.faults.periodic_storm() if emu.faults.applies(path) else None
        if periodic is not None:  # during a periodic storm every API request is a 429
            decision = periodic
        if decision.kind == "drop":
            entry.answered = emu.clock.epoch()
            emu.request_log.append(entry)
            self.close_connection = True
            return
        if decision.kind == "stall":
            time.sleep(decision.seconds)
        key = api_key(self.headers)
        verdict: Verdict | None = None
        if decision.kind == "storm":
            response = self._storm(decision, self._peek(key, route.group))
        elif decision.kind == "error":
            response = self._error(decision.status, decision.html)
        elif decision.kind == "invalid":
            response = Response(200, b'{"data": [,]}', "application/json")
        elif decision.kind == "empty":
            response = Response(200, b"", "application/json")
        elif decision.kind == "unauthorized":  # the key was revoked while the client ran
            response = json_response(401, {"error": "Unauthorized"})
        elif key is None or config.api_key not in (None, key):
            response = json_response(401, {"error": "Unauthorized"})
        else:
            verdict = emu.ratelimiter.check(key, route.group, config.rate, config.rate_window)
            if not verdict.allowed:
                response = self._rate_limited(verdict)
            elif route.handler is None:
                response = api.not_routed(route)
            else:
                request = Request(method, path, params, body, self.headers, key)
                response = self._dispatch(emu, route, request)
        if decision.kind != "storm" and response.content_type != "text/html":
            self._rate_headers(response, verdict or self._peek(key, route.group))
        entry.status = response.status
        if response.status == 429:
            entry.wait = announced_wait(response)
        entry.answered = emu.clock.epoch()
        emu.request_log.append(entry)
        self._send(response, truncate=decision.kind == "truncate")

    def _dispatch(self, emu: Emulator, route: api.Route, request: Request) -> Response:
        try:
            return route.handler(emu, request, *route.args)  # type: ignore[misc]
        except ApiError as exc:
            return json_response(exc.status, exc.body)
        except Exception:  # an emulator bug: answer like a server error, but show it
            traceback.print_exc()
            return json_response(500, {"error": "Internal Server Error"})

    def _peek(self, key: str | None, group: str) -> Verdict:
        """The rate-limit state for a request that does not count (rejected before the limiter)."""
        config = self.server.emulator.config
        return self.server.emulator.ratelimiter.check(
            key, group, config.rate, config.rate_window, consume=False
        )

    def _rate_headers(self, response: Response, verdict: Verdict) -> None:
        config = self.server.emulator.config
        response.headers["RateLimit"] = verdict.header(config.rate_fractional_reset)
        if config.legacy_rate_headers:
            response.headers["X-Rate-Limit-Limit"] = str(verdict.limit)
            response.headers["X-Rate-Limit-Remaining"] = str(verdict.remaining)
            response.headers["X-Rate-Limit-Reset"] = f"{verdict.reset:.3f}"

    def _rate_limited(self, verdict: Verdict) -> Response:
        body = {
            "error": {
                "rate_reset": round(verdict.reset, 3),
                "message": RATE_MESSAGE,
                "rate_limit_type": verdict.limit_type,
            }
        }
        response = json_response(429, body)
        response.headers["Retry-After"] = verdict.retry_after()
        return response

    def _storm(self, decision: Decision, verdict: Verdict) -> Response:
        """A 429 from the storm fault; each switch controls one of the three signals."""
        error: dict[str, Any] = {"message": RATE_MESSAGE, "rate_limit_type": "key"}
        if decision.body_rate_reset:
            error = {"rate_reset": decision.seconds, **error}
        response = json_response(429, {"error": error})
        config = self.server.emulator.config
        if decision.ratelimit_header:
            reset = format_reset(decision.seconds, config.rate_fractional_reset)
            response.headers["RateLimit"] = f"limit={verdict.limit}, remaining=0, reset={reset}"
        if decision.retry_after:
            response.headers["Retry-After"] = format_reset(decision.seconds, False)
        return response

    @staticmethod
    def _error(status: int, html: bool) -> Response:
        if html:
            page = f"<html><body><h1>{status} {HTTPStatus(status).phrase}</h1></body></html>"
            return Response(status, page.encode(), "text/html")
        return json_response(status, {"error": "Internal Server Error"})

    def _send(self, response: Response, truncate: bool = False) -> None:
        """Write the response (streamed bodies use chunked encoding)."""
        try:
            self.send_response(response.status)
            content_type = response.content_type
            if content_type == "application/json":
                content_type += "; charset=utf-8"
            self.send_header("Content-Type", content_type)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if isinstance(response.body, bytes):
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                body = response.body[: len(response.body) // 2] if truncate else response.body
                self.wfile.write(body)
            else:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in response.body:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        if truncate:
            self.close_connection = True


def make_server(
    emulator: Emulator, host: str = "127.0.0.1", port: int = 0, log_requests: bool = False
) -> EmulatorHTTPServer:
    """A bound (not yet serving) HTTP server for `emulator`."""
    return EmulatorHTTPServer(emulator, (host, port), log_requests)
