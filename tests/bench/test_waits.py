"""Counting requests sent inside an announced 429 wait, on synthetic request logs — and on a
real one: a client that ignores a periodic storm's waits, against the emulator over HTTP."""

from __future__ import annotations

import time

import pytest
import requests

from bench.waits import (
    announced_waits,
    client_requests_inside_waits,
    requests_inside_waits,
    storm_bound_s,
)
from close_emulator import EmulatorServer

EMAILS = "GET /activity/email/"
EVENTS = "GET /event/"


def entry(time: float, status: int = 200, group: str = EMAILS, **more: float) -> dict:
    """A request-log entry: arrival `time`, answered 0.15 s later unless given."""
    return {"time": time, "answered": more.get("answered", time + 0.15), "status": status,
            "group": group, "wait": more.get("wait")}  # fmt: skip


def test_requests_after_the_answer_and_before_the_wait_passed_count() -> None:
    log = [
        entry(10.0, 429, answered=10.2, wait=2.0),  # wait: (10.2, 12.2)
        entry(10.1),  # in flight when the 429 was answered: not counted
        entry(10.3),  # sent inside the wait
        entry(12.1),  # still inside
        entry(12.2),  # the wait has passed (the bound itself is allowed)
        entry(13.0),
    ]
    assert requests_inside_waits(log) == 2


def test_other_groups_are_not_held_by_a_429() -> None:
    log = [entry(10.0, 429, answered=10.2, wait=2.0), entry(11.0, group=EVENTS)]
    assert requests_inside_waits(log) == 0
    assert requests_inside_waits([*log, entry(11.0, group=EMAILS)]) == 1


def test_overlapping_waits_merge_and_retries_inside_count() -> None:
    log = [
        entry(0.0, 429, answered=0.1, wait=1.0),  # (0.1, 1.1)
        entry(0.5, 429, answered=0.6, wait=1.0),  # a retry inside the wait: counted; (0.6, 1.6)
        entry(1.3),  # inside the second wait only
        entry(1.7),
    ]
    assert announced_waits(log) == [(0.1, 1.6)]
    assert requests_inside_waits(log) == 2


def test_entries_without_waits_and_empty_logs() -> None:
    assert requests_inside_waits([]) == 0
    assert requests_inside_waits([entry(1.0, 503), entry(1.1), entry(1.2, 0)]) == 0
    assert announced_waits([entry(1.0, 429)]) == []  # a 429 without any wait signal


def test_storm_bound_uses_the_busiest_group_and_the_allowance() -> None:
    log = [entry(float(i)) for i in range(120)] + [entry(1.0, group=EVENTS)]
    log += [entry(2.0, 429, wait=1.0)]  # 429s are not needed requests
    # P=5, D=2, rate 20: 12 requests per second per group
    assert storm_bound_s(log, rate=20, period_s=5, duration_s=2) == pytest.approx(10.0)
    assert storm_bound_s([], rate=20, period_s=5, duration_s=2) == 0.0


@pytest.fixture()
def stormy(make_emulator) -> EmulatorServer:  # noqa: ANN001
    return make_emulator(emails=50, seed=1)  # type: ignore[no-any-return]


def test_a_client_ignoring_a_real_storm_is_caught(stormy: EmulatorServer) -> None:
    stormy.emulator.faults.set(storm_period_s=30, storm_duration_s=1)
    session = requests.Session()
    session.auth = ("key", "")
    url = stormy.base_url + "/activity/email/"
    statuses = [session.get(url, timeout=10).status_code for _ in range(3)]  # no waiting at all
    assert statuses[0] == 429
    assert requests_inside_waits(stormy.admin.requests()) == 2  # both came inside the wait
    # the polite client: waits out every announced wait (each at most 1 s after its answer)
    time.sleep(1.05)
    assert session.get(url, timeout=10).status_code == 200
    assert requests_inside_waits(stormy.admin.requests()) == 2


def test_the_client_trace_counts_from_when_the_client_read_the_429() -> None:
    trace = [
        {"group": EMAILS, "sent": 10.0, "seen": 10.2, "status": 429, "wait": 2.0},
        # arrived after the emulator answered the 429, sent before the client read it
        {"group": EMAILS, "sent": 10.19, "seen": 10.4, "status": 429, "wait": 1.5},
        {"group": EMAILS, "sent": 10.3, "seen": 10.5, "status": 200},  # sent inside
        {"group": EVENTS, "sent": 10.3, "seen": 10.5, "status": 200},  # another group
        {"group": EMAILS, "sent": 12.2, "seen": 12.4, "status": 200},  # the wait has passed
    ]
    assert client_requests_inside_waits(trace) == 1
