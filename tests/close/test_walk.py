"""The walk without a server: spans, splits, progress intervals, and the order fallback.

A stub stands in for the client: it answers `GET /activity/email/` with Close's semantics
(newest first, `date_created` filters, `_skip`/`_limit`, `has_more`), so the tests can
check the walk's exact requests and results, also with several workers at once.
"""

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sources.close.progress import from_state, gaps, loaded_until, merge, to_state
from sources.close.timestamps import parse_timestamp
from sources.close.walk import Span, Spans, Walk, split_evenly, walk_span

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class ListingStub:
    """Lists emails as Close does (newest first), or oldest first with `newest_first=False`."""

    def __init__(self, created: list[datetime], newest_first: bool = True) -> None:
        self.emails = [
            {"id": f"acti_{i:06}", "date_created": moment.isoformat()}
            for i, moment in enumerate(created)
        ]
        self.newest_first = newest_first
        self.requests: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(dict(params))
        bounds = {
            k: parse_timestamp(v) for k, v in params.items() if k.startswith("date_created__")
        }
        rows = [e for e in self.emails if _within(parse_timestamp(e["date_created"]), bounds)]
        rows.sort(key=lambda e: (e["date_created"], e["id"]), reverse=self.newest_first)
        skip, limit = params["_skip"], params["_limit"]
        return {"data": rows[skip : skip + limit], "has_more": len(rows) > skip + limit}


def _within(moment: Any, bounds: dict[str, Any]) -> bool:
    checks = {"gte": moment.__ge__, "gt": moment.__gt__, "lt": moment.__lt__, "lte": moment.__le__}
    return all(checks[key.split("__")[1]](value) for key, value in bounds.items())


def walk_ids(stub: ListingStub, span: tuple[datetime, datetime], workers: int) -> list[str]:
    walk = Walk(stub, [span], workers)  # type: ignore[arg-type]
    ids = [e["id"] for page in walk.pages() for e in page.emails]
    assert walk.finished
    return ids


def test_intervals_merge_subtract_and_round_trip_through_the_state() -> None:
    done = merge([(at(5), at(9)), (at(0), at(2)), (at(2), at(3)), (at(8), at(12))])
    assert done == [(at(0), at(3)), (at(5), at(12))]
    assert gaps((at(0), at(20)), done) == [(at(3), at(5)), (at(12), at(20))]
    assert gaps((at(1), at(2)), done) == []
    assert loaded_until(done, at(0)) == at(3)
    assert loaded_until(done, at(-1)) is None
    assert from_state(to_state(done)) == done


def test_split_evenly_cuts_by_duration_newest_first() -> None:
    pieces = split_evenly([(at(0), at(40)), (at(100), at(140))], 4)
    assert pieces == [(at(120), at(140)), (at(100), at(120)), (at(20), at(40)), (at(0), at(20))]
    assert split_evenly([(at(0), at(1))], 1) == [(at(0), at(1))]


@pytest.mark.parametrize("workers", [1, 2, 4, 8])
def test_every_email_once_whatever_the_number_of_workers(workers: int) -> None:
    # a burst of 3,000 emails in one hour inside two sparse years, some sharing an instant
    burst = [at(60 * 24 * 300 + i / 50) for i in range(3000)]
    sparse = [at(60 * 24 * day) for day in range(0, 730, 7)]
    same_instant = [at(1000)] * 250
    stub = ListingStub(burst + sparse + same_instant)
    ids = walk_ids(stub, (T0, at(60 * 24 * 731)), workers)
    assert sorted(ids) == sorted(e["id"] for e in stub.emails)
    assert len(ids) == len(set(ids))
    bound = -(-len(stub.emails) // 100)
    assert len(stub.requests) <= bound + 3 * workers + 10, len(stub.requests)


def test_a_split_while_a_page_is_in_flight_hands_the_rest_to_the_thief() -> None:
    stub = ListingStub([at(i) for i in range(500)])
    spans = Spans([(at(0), at(500))], 1)
    owner = spans.claim(stub.stop)
    assert owner is not None
    pages = walk_span(stub, spans, owner)  # type: ignore[arg-type]
    first = next(pages)
    assert [e["id"] for e in first.emails][:1] == ["acti_000499"] and owner.anchor == at(400)
    original = stub.get

    def split_then_answer(path: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = original(path, params)  # the page left with lo = 0 ...
        owner.lo = at(350)  # ... and a thief took [0, 350) meanwhile
        return answer

    stub.get = split_then_answer  # type: ignore[method-assign]
    second = next(pages)
    assert [parse_timestamp(e["date_created"]) for e in second.emails] == [
        at(i) for i in range(399, 349, -1)
    ]
    assert second.done == (at(350), at(500))  # the owner's part is complete
    assert next(pages, None) is None


def test_each_page_reports_what_is_completely_read() -> None:
    stub = ListingStub([at(i) for i in range(250)])
    spans = Spans([(at(0), at(250))], 1)
    span = spans.claim(stub.stop)
    assert span is not None
    done = [page.done for page in walk_span(stub, spans, span)]  # type: ignore[arg-type]
    tick = timedelta(microseconds=1)
    assert done == [(at(150) + tick, at(250)), (at(50) + tick, at(250)), (at(0), at(250))]


def test_walk_falls_back_to_plain_paging_when_the_order_is_not_newest_first() -> None:
    stub = ListingStub([at(i) for i in range(250)], newest_first=False)
    spans = Spans([(at(0), at(300))], 1)
    span = spans.claim(stub.stop)
    assert span is not None
    ids = [e["id"] for page in walk_span(stub, spans, span) for e in page.emails]  # type: ignore[arg-type]
    assert sorted(ids) == [e["id"] for e in stub.emails]


def test_an_idle_worker_splits_the_busiest_span_at_the_middle_of_its_unread_part() -> None:
    spans = Spans([(at(0), at(1000))], 1)
    stop = threading.Event()
    busy = spans.claim(stop)
    assert busy is not None
    busy.anchor, busy.rows = at(900), 2000  # 2,000 rows in the newest 100 minutes
    stolen = spans.claim(stop)
    assert stolen is not None
    assert (stolen.lo, stolen.hi) == (at(0), at(450)) and busy.lo == at(450)
    assert isinstance(stolen, Span) and spans.splits == 1
