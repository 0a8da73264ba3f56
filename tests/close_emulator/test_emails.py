"""Single emails over the API: POST, GET, PUT (drafts only), DELETE, thread DELETE, and `/me/`."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest

from .conftest import Api

GONE = {"error": "Empty query: Email matching query does not exist."}


@pytest.fixture()
def close(fresh) -> Api:
    return fresh(emails=120, history_days=20)


def a_lead(close: Api) -> str:
    return close.server.emulator.all_emails()[0]["lead_id"]


def now(close: Api) -> datetime:
    return close.server.emulator.clock.now()


def test_post_creates_an_email_that_get_and_list_return(close: Api) -> None:
    lead = a_lead(close)
    body = {
        "lead_id": lead,
        "status": "draft",
        "subject": "Draft 👋 für Zoë",
        "body_text": "Hello\nthere",
        "to": ["someone@example.com"],
    }
    before = now(close)
    response = close.post("/activity/email/", json=body)
    assert response.status_code == 200
    email = response.json()
    assert email["id"].startswith("acti_") and email["thread_id"] == email["id"]
    assert email["_type"] == "Email" and email["status"] == "draft"
    assert email["lead_id"] == lead
    assert email["subject"] == "Draft 👋 für Zoë" and email["to"] == ["someone@example.com"]
    assert email["body_text"] == "Hello\nthere"
    assert email["body_preview"] == "Hello there"
    assert email["body_html"] == "<div>Hello<br>\nthere</div>"
    assert email["activity_at"] is None and email["date_sent"] is None
    assert email["organization_id"] == close.server.emulator.world.organization_id
    created = datetime.fromisoformat(email["date_created"])
    assert before - timedelta(seconds=1) <= created <= now(close)
    assert email["date_updated"] == email["date_created"]
    assert close.get(f"/activity/email/{email['id']}/").json() == email
    assert close.get("/activity/email/", params={"_limit": 1}).json()["data"] == [email]
    assert close.server.emulator.get_email(email["id"]) == email


def test_post_keeps_a_given_date_created_at_millisecond_precision(close: Api) -> None:
    body = {
        "lead_id": a_lead(close),
        "status": "inbox",
        "date_created": "2021-09-18T08:29:12.123456+11:00",
        "sender": "Jean <jean@example.com>",
    }
    email = close.post("/activity/email/", json=body).json()
    assert email["date_created"] == "2021-09-17T21:29:12.123000+00:00"
    assert email["date_sent"] == email["activity_at"] == email["date_created"]
    assert email["direction"] == "incoming"


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"lead_id": "This field is required.", "status": "This field is required."}),
        ({"status": "sent"}, {"lead_id": "This field is required."}),
        ({"lead_id": "lead_missing", "status": "sent"}, {"lead_id": "Object does not exist."}),
        ({"lead_id": "LEAD", "status": "scheduled"}, {"date_scheduled": "This field is required."}),
        (
            {"lead_id": "LEAD", "status": "sent", "date_created": "later"},
            {"date_created": "Invalid ISO 8601 datetime."},
        ),
    ],
)
def test_post_validation_errors(close: Api, body: dict, errors: dict) -> None:
    body = {k: a_lead(close) if v == "LEAD" else v for k, v in body.items()}
    count = len(close.server.emulator.all_emails())
    response = close.post("/activity/email/", json=body)
    assert response.status_code == 400
    assert response.json() == {"errors": [], "field-errors": errors}
    assert len(close.server.emulator.all_emails()) == count


def test_post_bad_status_and_bodies(close: Api) -> None:
    bad = close.post("/activity/email/", json={"lead_id": a_lead(close), "status": "lost"})
    assert bad.status_code == 400
    assert set(bad.json()["field-errors"]) == {"status"}
    not_json = close.post(
        "/activity/email/", data="{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.json() == {"error": "The request contains invalid JSON."}
    a_list = close.post("/activity/email/", json=[1])
    assert a_list.json() == {"error": "JSON data must be a dict."}
    empty = close.post("/activity/email/")
    assert empty.status_code == 400
    assert "valid JSON" in empty.json()["error"]


def test_put_edits_drafts_only(close: Api) -> None:
    lead = a_lead(close)
    draft = close.post(
        "/activity/email/", json={"lead_id": lead, "status": "draft", "subject": "v1"}
    ).json()
    close.server.emulator.clock.advance(5)
    edited = close.put(f"/activity/email/{draft['id']}/", json={"subject": "v2"}).json()
    assert edited["subject"] == "v2"
    assert edited["date_created"] == draft["date_created"]
    assert edited["date_updated"] > draft["date_updated"]
    assert close.get(f"/activity/email/{draft['id']}").json()["subject"] == "v2"
    # read-only fields are ignored (nothing changes, date_updated stays)
    same = close.put(
        f"/activity/email/{draft['id']}/", json={"id": "acti_x", "organization_id": "orga_x"}
    ).json()
    assert same == edited

    sent = next(e for e in close.server.emulator.all_emails() if e["status"] == "sent")
    refused = close.put(f"/activity/email/{sent['id']}/", json={"subject": "changed"})
    assert refused.status_code == 400
    assert refused.json() == {"error": "Only drafts can be modified."}
    back = close.put(f"/activity/email/{sent['id']}/", json={"status": "draft"})
    assert back.status_code == 400
    assert back.json() == {
        "errors": [],
        "field-errors": {"status": "Cannot change the status from sent to draft."},
    }
    assert close.get(f"/activity/email/{sent['id']}/").json() == sent
    missing = close.put("/activity/email/acti_missing/", json={"subject": "x"})
    assert missing.status_code == 404 and missing.json() == GONE


def test_put_status_transitions(close: Api) -> None:
    lead = a_lead(close)
    draft = close.post("/activity/email/", json={"lead_id": lead, "status": "draft"}).json()
    url = f"/activity/email/{draft['id']}/"
    assert close.put(url, json={"status": "scheduled"}).json()["field-errors"] == {
        "date_scheduled": "This field is required."
    }
    when = "2030-01-02T03:04:05.678000+00:00"
    scheduled = close.put(url, json={"status": "scheduled", "date_scheduled": when}).json()
    assert scheduled["status"] == "scheduled"
    assert scheduled["date_scheduled"] == scheduled["activity_at"] == when
    assert close.put(url, json={"subject": "no"}).json() == {
        "error": "Only drafts can be modified."
    }
    cancelled = close.put(url, json={"status": "draft"}).json()
    assert cancelled["status"] == "draft"
    assert cancelled["activity_at"] is None and cancelled["date_scheduled"] is None
    sent = close.put(url, json={"status": "sent", "subject": "final"}).json()
    assert sent["status"] == "sent" and sent["subject"] == "final"
    assert sent["date_sent"] is not None and sent["activity_at"] == sent["date_sent"]
    assert sent["date_created"] == draft["date_created"]
    outbox = close.post("/activity/email/", json={"lead_id": lead, "status": "outbox"}).json()
    assert close.put(f"/activity/email/{outbox['id']}/", json={"status": "sent"}).status_code == 400
    assert (
        close.put(f"/activity/email/{outbox['id']}/", json={"status": "draft"}).json()["status"]
        == "draft"
    )


def test_delete_then_404(close: Api) -> None:
    victim = close.server.emulator.all_emails()[5]
    url = f"/activity/email/{victim['id']}/"
    response = close.delete(url)
    assert response.status_code == 200 and response.json() == {}
    gone = close.get(url)
    assert gone.status_code == 404 and gone.json() == GONE
    assert close.delete(url).json() == GONE
    assert victim["id"] not in [e["id"] for e in close.emails()]
    assert len(close.emails()) == 119


def test_delete_emailthread_deletes_its_emails(close: Api) -> None:
    emails = close.server.emulator.all_emails()
    sizes = Counter(e["thread_id"] for e in emails)
    thread, size = sizes.most_common(1)[0]
    assert size >= 2
    response = close.delete(f"/activity/emailthread/{thread}/")
    assert response.status_code == 200 and response.json() == {}
    for email in emails:
        status = close.get(f"/activity/email/{email['id']}/").status_code
        assert status == (404 if email["thread_id"] == thread else 200)
    assert len(close.emails()) == 120 - size
    missing = close.delete(f"/activity/emailthread/{thread}")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Empty query: EmailThread matching query does not exist."}
    assert close.get(f"/activity/emailthread/{thread}/").status_code == 405


def test_me(api: Api) -> None:
    me = api.get("/me/").json()
    emulator = api.server.emulator
    assert me["id"] == emulator.me()["id"] and me["id"].startswith("user_")
    assert me["email"] == emulator.me()["email"] and "@" in me["email"]
    assert me["first_name"] == emulator.me()["first_name"]
    assert me["organizations"] == [
        {"id": emulator.world.organization_id, "name": emulator.world.organization_name}
    ]
    assert datetime.fromisoformat(me["date_created"]) < emulator.clock.now()
