"""HTTP client for Close's REST API: auth, retries, rate-limit waits and pacing.

Why not dlt's `RESTClient` and its retrying `requests` helper: dlt's retry policy honours
only the `Retry-After` header (capped at its `max_delay`), while Close announces waits in
three places — the `RateLimit: limit=…, remaining=…, reset=…` header, `Retry-After`, and the
429 body's `error.rate_reset` — and a client must never retry sooner than the longest of
them. Pacing from the `RateLimit` header before a 429 is hit, a shared limiter for
concurrent windows, and counters for the run summary are not expressible there either. The
pagination (anchored `_skip`, see `walk.walk_window`) is not an `OffsetPaginator` walk.
So this module keeps a plain `requests.Session` and owns the retry loop.
"""

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

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

logger = logging.getLogger(__name__)

_RATELIMIT_RE = re.compile(r"(limit|remaining|reset)\s*=\s*([0-9]+(?:\.[0-9]+)?)")
_ID_SEGMENT_RE = re.compile(r"/[a-z]+_[A-Za-z0-9]+(?=/|$)")
RETRYABLE_EXCEPTIONS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
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
    rate_wait_s: float = 0.0  # time spent waiting because Close asked (429 or RateLimit pacing)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **increments: float) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self, name, getattr(self, name) + value)


def parse_ratelimit_header(value: str | None) -> dict[str, float]:
    """Parses `limit=100, remaining=0, reset=1` (`,` or `;` separated) into a dict."""
    if not value:
        return {}
    return {key: float(number) for key, number in _RATELIMIT_RE.findall(value)}


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
    """How long Close asks us to wait after a 429: the longest of its three signals."""
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


class RateLimiter:
    """Paces requests per endpoint group from Close's `RateLimit` header.

    Each answer tells how many requests are left in the current window and when it resets;
    the limiter hands out that budget, less the requests still in flight, and once it is
    spent (or after a 429) makes every thread wait for the reset. Shared by all windows
    fetched concurrently.
    """

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep
        self._lock = threading.Lock()
        self._budget: dict[str, int] = {}
        self._reset_at: dict[str, float] = {}
        self._in_flight: dict[str, int] = {}

    def acquire(self, group: str) -> float:
        """Blocks until a request to `group` may be sent; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                if now >= self._reset_at.get(group, 0.0):
                    self._budget.pop(group, None)  # a new window: budget unknown until told
                budget = self._budget.get(group)
                if budget is None or budget > 0:
                    if budget is not None:
                        self._budget[group] = budget - 1
                    self._in_flight[group] = self._in_flight.get(group, 0) + 1
                    return waited
                delay = self._reset_at[group] - now
            self._sleep(delay)
            waited += delay

    def release(self, group: str, headers: Mapping[str, str] | None) -> None:
        """Ends a request; its answer's `RateLimit` header sets the budget and reset time."""
        info = parse_ratelimit_header(headers.get("RateLimit")) if headers else {}
        with self._lock:
            self._in_flight[group] = self._in_flight.get(group, 1) - 1
            if "remaining" in info and "reset" in info:
                self._budget[group] = max(0, int(info["remaining"]) - self._in_flight[group])
                self._reset_at[group] = time.monotonic() + info["reset"]

    def block(self, group: str, seconds: float) -> None:
        """Stops all requests to `group` for `seconds` (after a 429)."""
        with self._lock:
            self._budget[group] = 0
            self._reset_at[group] = max(self._reset_at.get(group, 0.0), time.monotonic() + seconds)


class CloseClient:
    """Talks to one Close organization with one API key.

    Args:
        api_key: Close API key, sent as the Basic-auth user with an empty password.
        base_url: API root, e.g. `https://api.close.com/api/v1`.
        timeout: (connect, read) timeouts in seconds.
        max_attempts: tries per request for 5xx answers, dropped connections and timeouts.
        stats: counters to add to (e.g. the run's), else fresh ones.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base_s: float = BACKOFF_BASE_S,
        sleep: Callable[[float], None] = time.sleep,
        stats: RequestStats | None = None,
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
        self.limiter = RateLimiter(sleep)
        self._sleep = sleep
        self._session = requests.Session()
        self._session.auth = (api_key, "")
        self._session.headers["Accept"] = "application/json"
        self._last_server_time: datetime | None = None

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

    def last_server_time(self) -> datetime:
        """The `Date` of the latest answer (our clock if Close sent none)."""
        return self._last_server_time or datetime.now(UTC)

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Sends one request, waiting out 429s and retrying transient faults."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        group = endpoint_group(
            "GET" if headers and headers.get("x-http-method-override") else method, path
        )
        last_problem = ""
        attempt = 0
        throttled = 0
        rate_waited = 0.0
        while True:
            rate_waited += self.limiter.acquire(group)
            attempt += 1
            self.stats.add(requests=1)
            response = None
            try:
                response = self._session.request(
                    method, url, params=params, json=json, headers=headers, timeout=self.timeout
                )
                self._remember_server_time(response)
                self.limiter.release(group, response.headers)
                if response.status_code == 200:
                    body = response.json()
                    self.stats.add(rate_wait_s=rate_waited)
                    return body  # type: ignore[no-any-return]
            except ValueError:
                last_problem = f"an unreadable answer to {method} {path}"
            except RETRYABLE_EXCEPTIONS as exc:
                if response is None:
                    self.limiter.release(group, None)
                last_problem = f"{type(exc).__name__} on {method} {path}"
            else:
                status = response.status_code
                if status == 429:
                    wait = rate_limit_wait(response, time.time())
                    if wait > MAX_RATE_WAIT_S:
                        raise CloseUnavailableError(
                            f"Close asked to wait {wait:.0f} s before retrying {method} {path};"
                            " try again later"
                        )
                    throttled += 1
                    if throttled > MAX_THROTTLED_PER_REQUEST:
                        raise CloseUnavailableError(
                            f"Close kept rate-limiting {method} {path} ({throttled} times in a"
                            " row); another client may be using up the limit, try again later"
                        )
                    self.stats.add(throttled=1)
                    logger.info("429 on %s %s: waiting %.2f s as Close asks", method, path, wait)
                    self.limiter.block(group, wait)
                    attempt -= 1  # a throttled request is not a failed attempt
                    continue
                if status == 401:
                    raise CloseAuthError(
                        "Close rejected the API key (401 Unauthorized): check"
                        " SOURCES__CLOSE__API_KEY"
                    )
                if status < 500:
                    raise CloseApiError(
                        f"Close answered {status} to {method} {path}: {_error_message(response)}"
                    )
                last_problem = f"HTTP {status} on {method} {path}"
            if attempt >= self.max_attempts:
                raise CloseUnavailableError(
                    f"Close API at {self.base_url} failed {attempt} times in a row"
                    f" (last: {last_problem}); check the URL and network, then re-run"
                )
            delay = min(BACKOFF_MAX_S, self.backoff_base_s * 2 ** (attempt - 1))
            delay *= 0.5 + random.random() / 2  # jitter, so concurrent workers spread out
            logger.info("%s: retry %d in %.2f s", last_problem, attempt, delay)
            self.stats.add(retries=1)
            self._sleep(delay)

    def _remember_server_time(self, response: requests.Response) -> None:
        date_header = response.headers.get("Date")
        if not date_header:
            return
        try:
            self._last_server_time = email.utils.parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            pass


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
