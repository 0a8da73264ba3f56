"""The event log (`/event/`): filter combinations, limits, cursors, date filters, retention, and
the events every mutation writes."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest

from .conftest import Api

FILTERS = ("object_type", "action", "object_id", "lead_id", "user_id", "request_id")
# Close's documented list (developer.close.com/api/resources/events/list), written out here
# independently of the emulator's copy
SUPPORTED = {
    frozenset(c)
    for c in (
        (),
        ("object_type", "object_id"),
        ("object_type", "action"),
        ("object_id", "action"),
        ("lead_id", "object_type"),
        ("lead_id", "object_type", "action"),
        ("lead_id", "user_id", "object_type"),
        ("lead_id", "user_id", "object_type", "action"),
        ("lead_id", "user_id"),
        ("user_id", "object_id"),
        ("user_id", "object_id", "action"),
        ("user_id", "object_type"),
        ("user_id", "object_type", "action"),
        ("lead_id",),
        ("user_id",),
        ("request_id",),
    )
}
EVENT_KEYS = {
    "id", "date_created", "date_updated", "organization_id", "user_id", "request_id",
    "api_key_id", "oauth_client_id", "oauth_scope", "object_type", "object_id", "lead_id",
    "action", "changed_fields", "data", "previous_data", "meta",
}  # fmt: skip


def when(event: dict) -> datetime:
    """An event's date_updated (naive on Close, meaning UTC)."""
    value = datetime.fromisoformat(event["date_updated"])
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def log(shared) -> list[dict]:
    """Every event of the shared emulator, walked once (newest first)."""
    return Api(shared).events()


# --- reading the log -----------------------------------------------------------------------------


def test_cursor_walk_covers_every_event_once_newest_first(api: Api, log: list[dict]) -> None:
    emulator = api.server.emulator
    now = emulator.clock.now()
    cutoff = now - timedelta(days=30)
    emails = emulator.all_emails()
    surely_in = {
        e["id"]
        for e in emails
        if datetime.fromisoformat(e["date_created"]) > cutoff + timedelta(minutes=1)
    }
    maybe_in = {
        e["id"]
        for e in emails
        if datetime.fromisoformat(e["date_created"]) >= cutoff - timedelta(minutes=1)
    }
    ids = [event["id"] for event in log]
    assert len(ids) == len(set(ids)) > 100  # several pages, each event once
    assert surely_in <= {event["object_id"] for event in log} <= maybe_in
    assert {(e["object_type"], e["action"]) for e in log} == {("activity.email", "created")}
    times = [when(event) for event in log]
    assert times == sorted(times, reverse=True)
    with emulator.store.reader() as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == len(log)
    by_id = {e["id"]: e for e in emails}
    for event in log[:20]:
        assert set(event) == EVENT_KEYS
        assert event["id"].startswith("ev_")
        assert event["data"] == by_id[event["object_id"]]
        assert event["lead_id"] == event["data"]["lead_id"]
        assert event["date_created"] == event["date_updated"]
        assert event["organization_id"] == emulator.world.organization_id
        # created events are dated by date_created; top level naive, embedded with offset
        assert when(event) == datetime.fromisoformat(event["data"]["date_created"])
        assert "+" not in event["date_updated"] and event["data"]["date_created"].endswith("+00:00")


def test_pages_limit_and_cursors(api: Api, log: list[dict]) -> None:
    first = api.get("/event/", params={"_cursor": ""}).json()
    assert set(first) == {"data", "cursor_next", "cursor_previous"}
    assert len(first["data"]) == 50 and first["cursor_previous"] is None
    assert first["data"] == log[:50]
    assert api.get("/event/").json() == first  # no _cursor at all: the same first page
    second = api.get("/event/", params={"_cursor": first["cursor_next"]}).json()
    assert second["data"] == log[50:100]
    assert second["cursor_previous"]
    back = api.get("/event/", params={"_cursor": second["cursor_previous"]}).json()
    assert back["data"] == log[:50]
    small = api.get("/event/", params={"_limit": 7}).json()
    assert small["data"] == log[:7]
    after = api.get("/event/", params={"_limit": 7, "_cursor": small["cursor_next"]}).json()
    assert after["data"] == log[7:14]
    tail_cursor = None
    page = first
    while page["cursor_next"]:
        tail_cursor = page["cursor_next"]
        page = api.get("/event/", params={"_cursor": tail_cursor}).json()
    assert page["cursor_next"] is None and page["data"] == log[-len(page["data"]) :]
    assert api.get("/event/", params={"_skip": 10}).json()["data"] == log[:50]  # no _skip


def test_event_limit_and_bad_cursors(api: Api) -> None:
    too_big = api.get("/event/", params={"_limit": 51})
    assert too_big.status_code == 400
    assert too_big.json() == {
        "error": "The limit you set is larger than the maximum limit for this resource "
        "(max_limit = 50)."
    }
    assert api.get("/event/", params={"_limit": 50}).status_code == 200
    assert api.get("/event/", params={"_limit": "ten"}).status_code == 400
    bad = api.get("/event/", params={"_cursor": "not-a-cursor"})
    assert bad.status_code == 400 and bad.json() == {"error": "Invalid cursor."}


def test_get_one_event(api: Api, log: list[dict]) -> None:
    event = log[17]
    assert api.get(f"/event/{event['id']}/").json() == event
    assert api.get(f"/event/{event['id']}").json() == event
    missing = api.get("/event/ev_missing/")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Empty query: Event matching query does not exist."}


def test_filter_combination_matrix(api: Api, log: list[dict]) -> None:
    sample = log[3]
    values = {
        "object_type": "activity.email",
        "action": "created",
        "object_id": sample["object_id"],
        "lead_id": sample["lead_id"],
        "user_id": sample["user_id"],
        "request_id": sample["request_id"],
    }
    accepted = rejected = 0
    for size in range(len(FILTERS) + 1):
        for combo in itertools.combinations(FILTERS, size):
            params = {name: values[name] for name in combo}
            response = api.get("/event/", params=params)
            if frozenset(combo) in SUPPORTED:
                accepted += 1
                assert response.status_code == 200, combo
                data = response.json()["data"]
                want = [e for e in log if all(e[k] == v for k, v in params.items())][:50]
                assert data == want, combo
                assert sample in data or not combo or len(want) == 50
                dated = api.get(
                    "/event/", params={**params, "date_updated__gte": sample["date_updated"]}
                )
                assert dated.status_code == 200
            else:
                rejected += 1
                assert response.status_code == 400, combo
                message = response.json()["error"]
                assert message.startswith(
                    f"The combination of filters ({', '.join(sorted(combo))})"
                )
    assert (accepted, rejected) == (16, 48)
    alone = api.get("/event/", params={"object_type": "activity.email"})
    assert alone.status_code == 400


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
def test_date_updated_filters(api: Api, log: list[dict], op: str) -> None:
    pivot = log[60]
    bound = when(pivot)
    compare = {
        "gt": lambda t: t > bound,
        "gte": lambda t: t >= bound,
        "lt": lambda t: t < bound,
        "lte": lambda t: t <= bound,
    }[op]
    want = [e["id"] for e in log if compare(when(e))]
    for spelling in (
        pivot["date_updated"],  # naive, as the log prints it
        bound.isoformat(),
        bound.isoformat().replace("+00:00", "Z"),
        bound.astimezone(timezone(timedelta(hours=-7))).isoformat(),
    ):
        got = [e["id"] for e in api.events(**{f"date_updated__{op}": spelling})]
        assert got == want, spelling
    assert 0 < len(want) < len(log)


def test_date_updated_with_filters_and_bad_dates(api: Api, log: list[dict]) -> None:
    low, high = when(log[80]), when(log[20])
    got = api.events(
        object_type="activity.email",
        action="created",
        date_updated__gte=low.isoformat(),
        date_updated__lt=high.isoformat(),
    )
    assert [e["id"] for e in got] == [e["id"] for e in log if low <= when(e) < high]
    bad = api.get("/event/", params={"date_updated__gt": "last week"})
    assert bad.status_code == 400
    assert bad.json() == {
        "errors": [],
        "field-errors": {"date_updated__gt": "Invalid ISO 8601 datetime."},
    }


def test_offset_timestamps_when_configured(fresh) -> None:
    close = fresh(emails=60, history_days=10, naive_event_timestamps=False)
    event = close.get("/event/", params={"_limit": 1}).json()["data"][0]
    assert event["date_updated"].endswith("+00:00") and event["date_created"].endswith("+00:00")


# --- retention -----------------------------------------------------------------------------------


def test_retention_drops_old_events(fresh) -> None:
    close = fresh(emails=150, history_days=6, retention_days=3)
    emulator = close.server.emulator
    before = close.events()
    assert before and min(when(e) for e in before) >= emulator.clock.now() - timedelta(days=3)
    emulator.clock.advance(86_400)  # one day later: events older than two days back are gone
    cutoff = emulator.clock.now() - timedelta(days=3)
    after = close.events()
    assert [e["id"] for e in after] == [e["id"] for e in before if when(e) >= cutoff]
    assert 0 < len(after) < len(before)
    dropped = next(e for e in before if when(e) < cutoff)
    assert close.get(f"/event/{dropped['id']}/").status_code == 404
    emulator.clock.advance(3 * 86_400)  # past retention for everything
    assert close.events() == []
    assert close.get(f"/event/{after[0]['id']}/").status_code == 404
    new = emulator.record_open(emulator.all_emails()[0]["id"])
    fresh_log = close.events()
    assert len(fresh_log) == 1 and fresh_log[0]["data"] == new


# --- events written by mutations -----------------------------------------------------------------


@pytest.fixture()
def close(fresh) -> Api:
    return fresh(emails=200, history_days=20)


def events_of(close: Api, object_id: str) -> list[dict]:
    return close.events(object_type="activity.email", object_id=object_id)


def test_api_post_put_delete_events(close: Api) -> None:
    emulator = close.server.emulator
    lead = emulator.all_emails()[0]["lead_id"]
    email = close.post("/activity/email/", json={"lead_id": lead, "status": "draft"}).json()
    (created,) = events_of(close, email["id"])
    assert created["action"] == "created" and created["object_type"] == "activity.email"
    assert created["data"] == email and created["previous_data"] == {}
    assert created["changed_fields"] == [] and created["lead_id"] == lead
    assert created["user_id"] == emulator.me()["id"]
    assert created["api_key_id"].startswith("api_") and created["request_id"].startswith("req_")
    assert created["meta"] == {
        "request_path": "/api/v1/activity/email/",
        "request_method": "POST",
    }
    emulator.clock.advance(2)
    edited = close.put(f"/activity/email/{email['id']}", json={"subject": "Hello"}).json()
    updated, _ = events_of(close, email["id"])
    assert updated["action"] == "updated"
    assert updated["data"] == edited
    assert {"subject", "date_updated"} <= set(updated["changed_fields"])
    assert updated["changed_fields"] == sorted(updated["changed_fields"])
    assert updated["previous_data"] == {k: email.get(k) for k in updated["changed_fields"]}
    assert updated["previous_data"]["subject"] == email["subject"]
    assert updated["meta"]["request_method"] == "PUT"
    assert updated["request_id"] != created["request_id"]
    assert updated["api_key_id"] == created["api_key_id"]  # the same key
    emulator.clock.advance(2)
    close.delete(f"/activity/email/{email['id']}/")
    deleted = close.events(object_id=email["id"], action="deleted")
    assert len(deleted) == 1
    assert deleted[0]["data"] is None and deleted[0]["previous_data"] == edited
    assert deleted[0]["meta"]["request_method"] == "DELETE"
    assert [e["action"] for e in events_of(close, email["id"])] == [
        "deleted",
        "updated",
        "created",
    ]
    times = [when(e) for e in events_of(close, email["id"])]
    assert times == sorted(times, reverse=True) and times[0] > times[1] > times[2]


def test_each_in_process_mutation_writes_an_updated_event(close: Api) -> None:
    emulator = close.server.emulator
    emails = emulator.all_emails()
    sent = next(e for e in emails if e["status"] == "sent" and e["direction"] == "outgoing")
    with_attachment = next(e for e in emails if e["attachments"])
    other_lead = next(e["lead_id"] for e in emails if e["lead_id"] != sent["lead_id"])
    lead = emails[0]["lead_id"]
    draft = emulator.create_email(lead_id=lead, status="draft", subject="d")
    draft2 = emulator.create_email(lead_id=lead, status="draft", subject="d2")
    cases = [
        ("record_open", sent["id"], lambda: emulator.record_open(sent["id"]), {"opens"}),
        (
            "schedule_draft",
            draft["id"],
            lambda: emulator.schedule_draft(draft["id"], "2031-01-01T10:00:00+00:00"),
            {"status", "date_scheduled", "activity_at"},
        ),
        (
            "send_email",
            draft2["id"],
            lambda: emulator.send_email(draft2["id"]),
            {"status", "date_sent", "activity_at", "envelope", "message_ids"},
        ),
        (
            "remove_attachment",
            with_attachment["id"],
            lambda: emulator.remove_attachment(with_attachment["id"]),
            {"attachments"},
        ),
        (
            "reassign_lead",
            sent["id"],
            lambda: emulator.reassign_lead(sent["id"], other_lead),
            {"lead_id", "contact_id"},
        ),
        (
            "update_email",
            sent["id"],
            lambda: emulator.update_email(sent["id"], followup_sequence_delay=3),
            {"followup_sequence_delay"},
        ),
    ]
    for name, email_id, mutate, fields in cases:
        old = emulator.get_email(email_id)
        emulator.clock.advance(1)
        new = mutate()
        event = events_of(close, email_id)[0]
        assert event["action"] == "updated", name
        assert event["data"] == new == emulator.get_email(email_id), name
        assert fields | {"date_updated"} <= set(event["changed_fields"]), name
        assert event["previous_data"] == {k: old.get(k) for k in event["changed_fields"]}, name
        assert new["date_created"] == old["date_created"], name
        assert new["date_updated"] > old["date_updated"], name
        assert when(event) >= datetime.fromisoformat(new["date_updated"]) - timedelta(seconds=1)
        assert event["lead_id"] == new["lead_id"], name
    opened = emulator.get_email(sent["id"])
    assert len(opened["opens"]) == len(sent["opens"]) + 1
    assert opened["opens_summary"].startswith(f"Opened {len(opened['opens'])} time")
    # an update that changes nothing writes nothing
    count = len(events_of(close, sent["id"]))
    emulator.update_email(sent["id"], followup_sequence_delay=3)
    assert len(events_of(close, sent["id"])) == count


def test_reply_creates_an_email_and_sets_has_reply(close: Api) -> None:
    emulator = close.server.emulator
    original = next(
        e for e in emulator.all_emails() if e["direction"] == "outgoing" and not e["has_reply"]
    )
    emulator.clock.advance(1)
    reply = emulator.receive_reply(original["id"])
    assert reply["thread_id"] == original["thread_id"]
    assert reply["in_reply_to_id"] == original["id"]
    assert reply["direction"] == "incoming" and reply["status"] == "inbox"
    assert reply["subject"].startswith("Re: ")
    (created,) = events_of(close, reply["id"])
    assert created["action"] == "created" and created["data"] == reply
    updated = events_of(close, original["id"])[0]
    assert updated["action"] == "updated" and "has_reply" in updated["changed_fields"]
    assert updated["data"]["has_reply"] is True and updated["previous_data"]["has_reply"] is False


def test_deleted_lead_writes_a_deleted_event_per_email_and_for_the_lead(close: Api) -> None:
    emulator = close.server.emulator
    counts = Counter(e["lead_id"] for e in emulator.all_emails())
    lead, n = counts.most_common(1)[0]
    assert n >= 2
    before = {e["id"]: e for e in emulator.all_emails() if e["lead_id"] == lead}
    emulator.clock.advance(1)
    deleted_ids = emulator.delete_lead(lead)
    assert sorted(deleted_ids) == sorted(before)
    assert emulator.get_lead(lead) is None
    got = close.events(lead_id=lead, object_type="activity.email", action="deleted")
    assert sorted(e["object_id"] for e in got) == sorted(before)
    assert all(e["data"] is None and e["previous_data"] == before[e["object_id"]] for e in got)
    (lead_event,) = close.events(lead_id=lead, object_type="lead")
    assert lead_event["action"] == "deleted" and lead_event["object_id"] == lead
    assert lead_event["data"] is None and lead_event["previous_data"]["id"] == lead
    assert lead_event["previous_data"]["display_name"]
    assert close.emails(lead_id=lead) == []
    # every event of the lead, newest first: the lead's own comes last of the cascade
    newest = close.events(lead_id=lead)[0]
    assert newest["object_type"] == "lead"


@pytest.mark.parametrize("per_email", [True, False])
def test_thread_delete_with_and_without_per_email_events(fresh, per_email: bool) -> None:
    close = fresh(emails=200, history_days=20, thread_delete_email_events=per_email)
    emulator = close.server.emulator
    thread, size = Counter(e["thread_id"] for e in emulator.all_emails()).most_common(1)[0]
    members = [e for e in emulator.all_emails() if e["thread_id"] == thread]
    lead = members[0]["lead_id"]
    emulator.clock.advance(1)
    since = (emulator.clock.now() - timedelta(milliseconds=1)).isoformat()
    assert close.delete(f"/activity/emailthread/{thread}/").json() == {}
    recent = close.events(date_updated__gte=since)
    threads = [e for e in recent if e["object_type"] == "activity.email_thread"]
    assert len(threads) == 1
    assert threads[0]["action"] == "deleted" and threads[0]["object_id"] == thread
    assert threads[0]["data"] is None and threads[0]["previous_data"]["n_emails"] == size
    assert threads[0]["previous_data"]["_type"] == "EmailThread"
    assert threads[0]["lead_id"] == lead
    emails = [e for e in recent if e["object_type"] == "activity.email"]
    if per_email:
        assert sorted(e["object_id"] for e in emails) == sorted(m["id"] for m in members)
        assert {e["action"] for e in emails} == {"deleted"}
    else:
        assert emails == []
    assert all(close.get(f"/activity/email/{m['id']}/").status_code == 404 for m in members)


def test_merge_leads_writes_updated_events_with_meta(close: Api) -> None:
    emulator = close.server.emulator
    counts = Counter(e["lead_id"] for e in emulator.all_emails()).most_common()
    (source, n), (destination, m) = counts[0], counts[1]
    # merging a lead into itself is refused (it used to delete the lead, orphan its emails and
    # write a lead 'deleted' event)
    with pytest.raises(ValueError, match="into itself"):
        emulator.merge_leads(source, source)
    with pytest.raises(ValueError, match="into itself"):
        close.server.admin.merge_leads(source, source)
    assert emulator.get_lead(source) is not None
    assert close.events(lead_id=source, object_type="lead") == []
    emulator.clock.advance(1)
    moved = emulator.merge_leads(source, destination)
    assert len(moved) == n
    meta = {"merge_source_lead_id": source, "merge_destination_lead_id": destination}
    updates = close.events(lead_id=destination, object_type="activity.email", action="updated")
    assert sorted(e["object_id"] for e in updates) == sorted(moved)
    for event in updates:
        assert event["meta"] == meta
        assert "lead_id" in event["changed_fields"]
        assert event["previous_data"]["lead_id"] == source
        assert event["data"]["lead_id"] == destination
    (lead_event,) = close.events(lead_id=source, object_type="lead")
    assert lead_event["action"] == "deleted" and lead_event["meta"] == meta
    assert len(close.emails(lead_id=destination)) == n + m
    assert close.emails(lead_id=source) == []
    assert emulator.get_lead(source) is None
    assert len(emulator.get_lead(destination)["contacts"]) >= 2


def test_late_email_is_created_now_with_an_old_date_created(close: Api) -> None:
    emulator = close.server.emulator
    since = emulator.clock.now() - timedelta(milliseconds=1)  # events have ms precision
    late = emulator.add_late_email(20, subject="Old news")
    created = datetime.fromisoformat(late["date_created"])
    assert (
        since - timedelta(days=20, seconds=2)
        <= created
        <= since - timedelta(days=20) + timedelta(seconds=1)
    )
    assert late["date_sent"] == late["activity_at"] == late["date_created"]
    assert late["status"] == "inbox" and late["subject"] == "Old news"
    (event,) = close.events(
        object_type="activity.email", action="created", date_updated__gte=since.isoformat()
    )
    assert event["object_id"] == late["id"] and event["data"] == late
    assert when(event) >= since - timedelta(milliseconds=1)  # the event is dated now
    # a date_created window covering "recently" does not find it; one 20 days back does
    recent = close.emails(date_created__gte=(since - timedelta(days=1)).isoformat())
    assert recent and late["id"] not in [e["id"] for e in recent]
    window = {
        "date_created__gte": (created - timedelta(seconds=1)).isoformat(),
        "date_created__lte": (created + timedelta(seconds=1)).isoformat(),
    }
    assert late["id"] in [e["id"] for e in close.emails(**window)]
