"""HTTP client for Close's REST API: auth, the retry loop, rate-limit waits and pacing.

Why not dlt's `RESTClient` and its retrying `requests` helper: dlt's retry policy honours
only the `Retry-After` header (capped at its `max_delay`), while Close announces waits in
three places — the `RateLimit: limit=…, remaining=…, reset=…` header, `Retry-After`, and the
429 body's `error.rate_reset` — and a client must never retry sooner than the longest of
them. Pacing from the `RateLimit` header before a 429 is hit (`ratelimit.RateLimiter`,
shared by every worker thread) and counters for the run summary are not expressible there
either, and the pagination (anchored `_skip`, see `walk.py`) is not an `OffsetPaginator`
walk. So this module owns the loop, shaped like the Singer SDK's REST stream: `classify`
says what an answer is, `_decide` how long to wait before the next try, `request` loops.
Like dlt's client, each thread has its own `requests.Session`.
"""

import contextlib
import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import requests
import urllib3

from .ratelimit import RateLimiter, Stopped, parse_ratelimit_header
from .settings import (
    BACKOFF_BASE_S,
    BACKOFF_MAX_S,
    CONNECT_TIMEOUT_S,
    DEFAULT_RATE_WAIT_S,
    MAX_ATTEMPTS,
    MAX_RATE_WAIT_S,
    MAX_THROTTLED_PER_REQUEST,
    ME_PATH,
    READ_TIMEOUT_S,
)
from .trace import TRACE

__all__ = [
    "CloseApiError",
    "CloseAuthError",
    "CloseClient",
    "CloseUnavailableError",
    "RequestStats",
    "Stopped",
    "classify",
    "endpoint_group",
    "parse_ratelimit_header",
    "rate_limit_wait",
]

logger = logging.getLogger(__name__)

_ID_SEGMENT_RE = re.compile(r"/[a-z]+_[A-Za-z0-9]+(?=/|$)")
RETRYABLE_EXCEPTIONS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
# A request that cannot be sent as written: retrying it cannot help.
INVALID_REQUEST_EXCEPTIONS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
)


class CloseApiError(Exception):
    """A request that Close answered with an error we must not retry. One-line message."""


class CloseAuthError(CloseApiError):
    """Close rejected the API key (401)."""


class CloseUnavailableError(CloseApiError):
    """Close could not be reached or kept failing until the retries ran out."""


@dataclass
class RequestStats:
    """Counters for the run summary; safe to update from several threads."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    # wall time during which at least one worker waited because Close asked (429 or pacing):
    # the union of the workers' waits, not their sum, which can exceed the run's duration
    rate_wait_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _waiters: int = field(default=0, repr=False)
    _wait_started: float = field(default=0.0, repr=False)

    def add(self, **increments: float) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self, name, getattr(self, name) + value)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Counts the wall time during which at least one worker is inside this block."""
        with self._lock:
            if self._waiters == 0:
                self._wait_started = time.monotonic()
            self._waiters += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiters -= 1
                if self._waiters == 0:
                    self.rate_wait_s += time.monotonic() - self._wait_started


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds, from either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def rate_limit_wait(response: requests.Response, now: float) -> float:
    """How long Close asks us to wait after a 429: the longest of its signals."""
    waits = []
    reset = parse_ratelimit_header(response.headers.get("RateLimit")).get("reset")
    if reset is not None:
        waits.append(reset)
    legacy_reset = response.headers.get("X-Rate-Limit-Reset")
    if legacy_reset:
        try:
            waits.append(float(legacy_reset))
        except ValueError:
            pass
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if retry_after is not None:
        waits.append(retry_after)
    try:
        body_reset = response.json()["error"]["rate_reset"]
        waits.append(float(body_reset))
    except (ValueError, KeyError, TypeError):
        pass
    return max(waits) if waits else DEFAULT_RATE_WAIT_S


def endpoint_group(method: str, path: str) -> str:
    """Close counts rate limits per endpoint group: a method plus a path without ids."""
    return f"{method} {_ID_SEGMENT_RE.sub('/{id}', path)}"


@dataclass(frozen=True)
class Answer:
    """What one try came to: the body, a 429's wait, or a problem that may or may not pass."""

    kind: Literal["ok", "throttled", "held", "transient", "fatal", "auth"]
    body: Any = None
    wait: float = 0.0  # throttled: the longest wait Close announced
    problem: str = ""  # transient, fatal: one line
    # transient: no connection could be made (refused, no DNS name, connect timed out)
    unreachable: bool = False


def classify(response: requests.Response | None, error: Exception | None, where: str) -> Answer:
    """Says what an answer (or the exception instead of one) to `where` ("GET /path") is."""
    if error is not None:
        if isinstance(error, INVALID_REQUEST_EXCEPTIONS):
            return Answer("fatal", problem=f"cannot send {where}: {error}")
        reason = _connect_failure(error)
        if reason:
            return Answer("transient", problem=f"{reason} on {where}", unreachable=True)
        return Answer("transient", problem=f"{type(error).__name__} on {where}")
    assert response is not None
    status = response.status_code
    if status == 200:
        if "html" in response.headers.get("Content-Type", "") or _looks_like_html(response):
            return Answer("fatal", problem=f"an HTML page, not Close's JSON, answered {where}")
        try:
            # orjson: several times faster than the simplejson `response.json()` picks when
            # installed, and decoding pages is the walk's main CPU cost
            return Answer("ok", body=orjson.loads(response.content))
        except ValueError:
            return Answer("transient", problem=f"an unreadable answer to {where}")
    if status == 429:
        return Answer("throttled", wait=rate_limit_wait(response, time.time()))
    if status == 401:
        return Answer("auth")
    if status < 500:
        return Answer(
            "fatal", problem=f"Close answered {status} to {where}: {_error_message(response)}"
        )
    return Answer("transient", problem=f"HTTP {status} on {where}")


class CloseClient:
    """Talks to one Close organization with one API key, from any number of threads.

    Args:
        api_key: Close API key, sent as the Basic-auth user with an empty password.
        base_url: API root, e.g. `https://api.close.com/api/v1`.
        timeout: (connect, read) timeouts in seconds.
        max_attempts: tries per request for 5xx answers, dropped connections and timeouts.
        stats: counters to add to (e.g. the run's), else fresh ones.
        limiter: the rate limiter (with its clock and stop signal), else a fresh one.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base_s: float = BACKOFF_BASE_S,
        stats: RequestStats | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise CloseAuthError(
                "No Close API key: set SOURCES__CLOSE__API_KEY or sources.close.api_key in"
                " .dlt/secrets.toml"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.stats = stats or RequestStats()
        self.limiter = limiter or RateLimiter()
        self._auth = (api_key, "")
        self._local = threading.local()  # one requests.Session per thread, as dlt's client
        self._time_lock = threading.Lock()
        self._last_server_time: datetime | None = None
        self._answered = False  # whether any answer came from base_url yet

    @property
    def stop(self) -> threading.Event:
        """Set it to stop every worker using this client, also those sleeping."""
        return self.limiter.stop

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET `path` (relative to the base URL) and return the decoded JSON body."""
        return self.request("GET", path, params=params)

    def get_long(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET with the parameters in a body: Close's long-URL form for long `id__in` lists."""
        return self.request(
            "POST", path, json={"_params": params}, headers={"x-http-method-override": "GET"}
        )

    def server_now(self) -> datetime:
        """Close's current time, from the `Date` header of a cheap request (`/me/`).

        Cursors on Close's own timestamps are set from Close's clock, not ours, so a skewed
        local clock cannot open a gap. Also proves the API key works before any walk starts.
        """
        self.get(ME_PATH)
        return self.last_server_time()

    def answered_time(self) -> datetime:
        """Close's time as of its latest answer (`server_now()` before any answer).

        `Date` has whole seconds and the answer may be a moment old, so this is never later
        than Close's now: a cursor set from it re-reads a moment more, never skips one, and
        costs no request (the change scan at the end of a walk starts a round trip sooner).
        """
        with self._time_lock:
            known = self._last_server_time
        return known if known is not None else self.server_now()

    def organization_id(self) -> str | None:
        """The id of the organization of this API key (`/me/`), None if Close names none."""
        organizations = self.get(ME_PATH).get("organizations") or []
        found = organizations[0].get("id") if organizations else None
        return str(found) if found else None

    def last_server_time(self) -> datetime:
        """The `Date` of the latest answer (our clock if Close sent none)."""
        with self._time_lock:
            return self._last_server_time or datetime.now(UTC)

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Sends one request, waiting out 429s and retrying faults that may pass."""
        effective = "GET" if headers and headers.get("x-http-method-override") else method
        group = endpoint_group(effective, path)
        where = f"{method} {path}"
        failures = throttled = 0
        while True:
            with self.stats.waiting():
                self.limiter.acquire(group)
            answer = self._try(group, method, path, where, params, json, headers)
            if answer.kind == "ok":
                return answer.body  # type: ignore[no-any-return]
            if answer.kind == "held":
                continue
            if answer.kind == "throttled":
                throttled += 1
                self._on_throttled(group, where, answer.wait, throttled)
                continue
            failures += 1
            self._backoff(answer, failures)

    def _try(
        self,
        group: str,
        method: str,
        path: str,
        where: str,
        params: dict[str, Any] | None,
        json: dict[str, Any] | None,
        headers: dict[str, str] | None,
    ) -> Answer:
        """One try: sends, remembers Close's clock, releases the limiter on every path.

        A 429 blocks the group here, the moment it is read, so that a worker granted a slot
        just before does not send into the wait: it sees the block and holds back.
        """
        if not self.limiter.admits(group):
            self.limiter.release(group, None, throttled=True)
            return Answer("held")
        sent = time.time()  # for the benchmark's trace: just after the limiter's last check
        self.stats.add(requests=1)
        response: requests.Response | None = None
        error: Exception | None = None
        answer: Answer | None = None
        try:
            response = self._session().request(
                method,
                f"{self.base_url}/{path.lstrip('/')}",
                params=params,
                json=json,
                headers=headers,
                timeout=self.timeout,
            )
            self._remember_server_time(response)
            self._answered = True
        except (*RETRYABLE_EXCEPTIONS, *INVALID_REQUEST_EXCEPTIONS) as exc:
            error = exc
        finally:
            answered = response is not None or error is not None  # not on an interrupt
            answer = classify(response, error, where) if answered else None
            throttled = answer is not None and answer.kind == "throttled"
            if throttled:
                self.limiter.block(group, answer.wait)  # type: ignore[union-attr]
            status = response.status_code if response is not None else 0
            TRACE.record(group, sent, status, answer.wait if throttled else 0.0)  # type: ignore[union-attr]
            self.limiter.release(
                group, response.headers if response is not None else None, throttled
            )
        assert answer is not None
        return answer

    def _on_throttled(self, group: str, where: str, wait: float, in_a_row: int) -> None:
        """A 429 (its group already blocked by `_try`): gives up when the wait cannot pass."""
        if wait > MAX_RATE_WAIT_S:
            raise CloseUnavailableError(
                f"Close asked to wait {wait:.0f} s before retrying {where}; try again later"
            )
        if in_a_row > MAX_THROTTLED_PER_REQUEST:
            raise CloseUnavailableError(
                f"Close kept rate-limiting {where} ({in_a_row} times in a row); another client"
                " may be using up the limit, try again later"
            )
        self.stats.add(throttled=1)  # `_try` has blocked the group already
        logger.info("429 on %s: waiting %.2f s as Close asks", where, wait)

    def _backoff(self, answer: Answer, failures: int) -> None:
        """Raises for what cannot pass or after the last try; else sleeps before the next."""
        if answer.kind == "auth":
            raise CloseAuthError(
                "Close rejected the API key (401 Unauthorized): check SOURCES__CLOSE__API_KEY"
            )
        if answer.kind == "fatal":
            raise CloseApiError(f"{answer.problem}; check SOURCES__CLOSE__BASE_URL")
        if answer.unreachable and not self._answered:
            # a refused connection, an unknown host or a connect timeout before Close ever
            # answered is a wrong URL or a network down, not a blip: retrying it for minutes
            # only hides that (later in a run they are retried: Close was there)
            raise CloseUnavailableError(
                f"cannot connect to the Close API at {self.base_url} ({answer.problem});"
                " check SOURCES__CLOSE__BASE_URL and the network, then re-run"
            )
        if failures >= self.max_attempts:
            raise CloseUnavailableError(
                f"Close API at {self.base_url} failed {failures} times in a row"
                f" (last: {answer.problem}); check the URL and network, then re-run"
            )
        delay = min(BACKOFF_MAX_S, self.backoff_base_s * 2 ** (failures - 1))
        delay *= 0.5 + random.random() / 2  # jitter, so concurrent workers spread out
        logger.info("%s: retry %d in %.2f s", answer.problem, failures, delay)
        self.stats.add(retries=1)
        if self.stop.wait(delay):
            raise Stopped("stopped")

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = self._auth
            session.headers["Accept"] = "application/json"
            self._local.session = session
        return session

    def _remember_server_time(self, response: requests.Response) -> None:
        date_header = response.headers.get("Date")
        if not date_header:
            return
        try:
            moment = email.utils.parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            return
        with self._time_lock:  # answers arrive out of order across threads: keep the latest
            if self._last_server_time is None or moment > self._last_server_time:
                self._last_server_time = moment


def _looks_like_html(response: requests.Response) -> bool:
    """A page (a web site, a captive portal) served without an HTML content type."""
    return response.content[:200].lstrip()[:1] == b"<"


def _connect_failure(error: Exception) -> str | None:
    """Why no connection could be made ("connection refused", "unknown host", "connect timed
    out"), else None (the connection was made: a read timeout, a dropped connection).

    requests wraps urllib3's `NewConnectionError` (refused; `NameResolutionError` is one) in
    a `MaxRetryError` in a `ConnectionError`; a connect timeout is its `ConnectTimeout` (a
    `Timeout` too, like a read timeout, which is not a failure to connect).
    """
    if isinstance(error, requests.ConnectTimeout):  # an address that drops SYNs: blackholed
        return "connect timed out"
    if not isinstance(error, requests.ConnectionError) or isinstance(error, requests.Timeout):
        return None
    reason = getattr(error.args[0] if error.args else None, "reason", None)
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return "unknown host"
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return "connection refused"
    return None


def _error_message(response: requests.Response) -> str:
    """Close's error text from `{"error": …}` or `{"errors": …, "field-errors": …}`."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no details"
    if isinstance(body, dict):
        if body.get("field-errors"):
            return "; ".join(f"{k}: {v}" for k, v in body["field-errors"].items())
        if body.get("error"):
            return str(body["error"])
        if body.get("errors"):
            return "; ".join(str(e) for e in body["errors"])
    return str(body)[:200]
