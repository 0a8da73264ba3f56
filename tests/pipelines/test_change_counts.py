"""Exact counts: an email re-read unchanged is neither new nor updated; rate waits are wall time."""

from datetime import UTC, datetime

import pyarrow as pa

from pipelines.change_counts import EmailChangeCounter
from sources.close import client as client_module
from sources.close.client import RequestStats

T1 = datetime(2024, 1, 1, tzinfo=UTC)
T2 = datetime(2024, 2, 1, tzinfo=UTC)


def emails(*rows: tuple[str, datetime, bool]) -> pa.Table:
    ids, versions, deleted = zip(*rows, strict=True)
    return pa.table({"id": list(ids), "date_updated": list(versions), "_deleted": list(deleted)})


def test_only_real_changes_count() -> None:
    stored = {"a": T1, "b": T1, "c": T1}
    looked_up: list[list[str]] = []

    def lookup(ids):  # noqa: ANN001, ANN202
        looked_up.append(list(ids))
        return {i: stored[i] for i in ids if i in stored}

    counter = EmailChangeCounter(lookup, warehouse_empty=False)
    counter.observe(emails(("a", T1, False), ("b", T2, False), ("n", T2, False)))
    stored["n"] = T2  # loaded by this run's first chunk: not an old version
    counter.observe(emails(("a", T1, False), ("n", T2, False), ("c", T2, True)))
    counter.observe(pa.table({"email_id": ["a"], "position": [0]}))  # a child table: ignored
    assert counter.counts(stored_after=4) == {"new": 1, "updated": 1, "deleted": 1}
    assert looked_up == [["a", "b", "n"], ["c"]]  # each id once, at first sight
    assert counter.emails_seen == 5


def test_an_empty_warehouse_is_not_looked_up() -> None:
    def lookup(ids):  # noqa: ANN001, ANN202
        raise AssertionError("a first sync needs no lookups")

    counter = EmailChangeCounter(lookup, warehouse_empty=True)
    counter.observe(emails(("a", T1, False), ("b", T1, False)))
    assert counter.counts(stored_after=2) == {"new": 2, "updated": 0, "deleted": 0}


def test_rate_wait_is_the_wall_time_with_any_worker_waiting(monkeypatch) -> None:  # noqa: ANN001
    now = [0.0]
    monkeypatch.setattr(client_module.time, "monotonic", lambda: now[0])
    stats = RequestStats()
    first, second = stats.waiting(), stats.waiting()
    first.__enter__()  # t=0: worker 1 waits
    now[0] = 1.0
    second.__enter__()  # t=1: worker 2 waits too
    now[0] = 3.0
    first.__exit__(None, None, None)
    now[0] = 4.0
    second.__exit__(None, None, None)
    now[0] = 10.0
    with stats.waiting():  # a later wait of 2 s
        now[0] = 12.0
    assert stats.rate_wait_s == 6.0  # [0, 4] and [10, 12]; the sum of waits would be 8
