"""The shared rate limiter, driven by a fake clock, and under real concurrency via the
emulator's request log: never early after a 429, later block kept, even pacing, release on
every path, and a stop that wakes sleeping workers."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from close_emulator import EmulatorServer
from sources.close.client import CloseClient
from sources.close.ratelimit import RateLimiter, Stopped

GROUP = "GET /activity/email/"


class FakeClock:
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sent: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter_on(clock: FakeClock) -> RateLimiter:
    return RateLimiter(clock=clock.time, sleep=clock.sleep)


def send(limiter: RateLimiter, clock: FakeClock, header: str | None) -> None:
    """One request: acquire, note the moment, release with the answer's RateLimit header."""
    limiter.acquire(GROUP)
    clock.sent.append(clock.now)
    limiter.release(GROUP, {"RateLimit": header} if header else {}, throttled=False)


def test_a_429_blocks_the_group_and_an_answer_in_flight_cannot_shorten_it() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    send(limiter, clock, "limit=20, remaining=19, reset=1")
    limiter.acquire(GROUP)  # a request goes out ...
    until = clock.now + 5.0
    limiter.block(GROUP, 5.0)  # ... another one's 429 says: wait 5 s
    limiter.release(GROUP, {"RateLimit": "limit=20, remaining=18, reset=1"}, throttled=False)
    limiter.block(GROUP, 2.0)  # a shorter wait announced later does not shorten it either
    assert limiter.blocked_until(GROUP) == until
    send(limiter, clock, "limit=20, remaining=19, reset=1")
    assert clock.sent[-1] >= until


def test_paces_evenly_just_under_the_announced_limit() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    for _ in range(200):
        send(limiter, clock, "limit=20, remaining=15, reset=1")
    gaps = [b - a for a, b in zip(clock.sent[1:], clock.sent[2:], strict=False)]
    assert min(gaps) >= 1 / 20  # never faster than the limit, not even in bursts
    per_second = [sum(1 for t in clock.sent if s <= t < s + 1) for s in range(1, 9)]
    assert all(18 <= n <= 20 for n in per_second), per_second  # and close to it


class LateClock(FakeClock):
    """A clock whose sleepers wake late by up to `lag` seconds (a busy machine)."""

    def __init__(self, lag: float, seed: int) -> None:
        super().__init__()
        self.lag = lag
        self.rng = random.Random(seed)

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.rng.uniform(0, self.lag)


@pytest.mark.parametrize("limit", [1, 4, 20])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_window_ever_sees_more_than_the_limit(limit: int, seed: int) -> None:
    """The probe holds the first slot, and catching up late slots never bunches requests:
    whichever moment Close's window starts at, it sees at most `limit` of them."""
    clock = LateClock(lag=0.3 / limit, seed=seed)
    limiter = limiter_on(clock)
    for _ in range(20 * limit):
        send(limiter, clock, f"limit={limit}, remaining={limit - 1}, reset=1")
    sent = clock.sent
    assert all(later - sent[i] >= 1.0 for i, later in enumerate(sent[limit:])), sent
    assert len(sent) / (sent[-1] - sent[0]) > 0.75 * limit  # and still near the limit


def test_a_spent_window_holds_the_group_back_one_slot() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    send(limiter, clock, "limit=20, remaining=19, reset=1")
    limiter.acquire(GROUP)
    clock.now += 0.2  # the answer takes a while
    limiter.release(GROUP, {"RateLimit": "limit=20, remaining=0, reset=1"}, throttled=False)
    assert limiter.blocked_until(GROUP) == pytest.approx(clock.now + 1 / (20 * 0.97))


def test_a_group_is_probed_with_one_request_until_its_limit_is_known() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    limiter.acquire(GROUP)
    state = limiter._groups[GROUP]
    assert limiter._try_take(state) > 0  # a second worker waits for the first answer
    limiter.release(GROUP, None, throttled=False)  # no answer at all: still unknown
    assert limiter._try_take(state) == 0
    limiter.release(GROUP, {}, throttled=False)  # an answer without RateLimit: not paced
    assert limiter._try_take(state) == 0 and limiter._try_take(state) == 0


def test_stop_wakes_a_worker_sleeping_in_a_long_wait() -> None:
    limiter = RateLimiter()
    limiter.block(GROUP, 600)
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            limiter.acquire(GROUP)
        except Stopped as exc:
            failures.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    limiter.stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive() and len(failures) == 1


@pytest.fixture
def close(make_emulator) -> EmulatorServer:  # noqa: ANN001
    return make_emulator(emails=50, seed=4)


def test_no_worker_sends_inside_a_wait_close_announced(close: EmulatorServer) -> None:
    """Eight threads on one group, 429 storms with a 1.5 s reset: every request after a
    429 waits for it, counted in the emulator's log (arrival times, zero latency)."""
    close.emulator.faults.set(storm_next=3, storm_reset_seconds=1.5)
    client = CloseClient("api_key", close.base_url)
    with ThreadPoolExecutor(8) as pool:
        pages = list(pool.map(lambda _: client.get("/activity/email/", {"_limit": 1}), range(40)))
    assert all(len(p["data"]) == 1 for p in pages)
    log = [e for e in close.emulator.request_log.snapshot() if e.path.startswith("/api")]
    storms = [e for e in log if e.status == 429]
    assert storms and client.stats.throttled == len(storms)
    in_flight = 0.05  # sent before the 429 reached the client
    early = [
        e for s in storms for e in log
        if s.time + in_flight < e.time < s.time + 1.5 - 0.01
    ]  # fmt: skip
    assert early == []
    assert client.limiter._groups[f"GET {'/activity/email/'}"].in_flight == 0


def test_the_limiter_is_released_after_dropped_and_failed_requests(
    close: EmulatorServer,
) -> None:
    close.emulator.faults.set(drop_next=2, error_next=2)
    client = CloseClient("api_key", close.base_url, backoff_base_s=0.01)
    client.get("/activity/email/", {"_limit": 1})
    assert client.stats.retries == 4
    assert client.limiter._groups[GROUP].in_flight == 0


def test_a_worker_granted_a_slot_before_a_429_holds_back(close: EmulatorServer) -> None:
    client = CloseClient("api_key", close.base_url)
    client.get("/activity/email/", {"_limit": 1})
    client.limiter.acquire(GROUP)  # this worker's slot is granted ...
    client.limiter.block(GROUP, 0.5)  # ... and another worker's 429 arrives before it sends
    answer = client._try(GROUP, "GET", "/activity/email/", "GET /activity/email/", {}, None, None)
    assert answer.kind == "held"
    assert len([e for e in close.emulator.request_log.snapshot() if e.path.startswith("/api")]) == 1
    assert client.limiter._groups[GROUP].in_flight == 0
