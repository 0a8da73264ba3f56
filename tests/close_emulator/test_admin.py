"""The request log, the admin HTTP API through `AdminClient`, the clock, and the real CLI run by
`EmulatorProcess`."""

from __future__ import annotations

import email.utils
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from close_emulator import AdminClient, EmulatorProcess

from .conftest import Api


@pytest.fixture()
def close(fresh) -> Api:
    return fresh(emails=150, history_days=20)


# --- request log ---------------------------------------------------------------------------------


def test_request_log_in_process_and_over_http(close: Api) -> None:
    emulator = close.server.emulator
    admin = close.server.admin
    admin.clear_requests()
    assert emulator.request_log[:] == [] and admin.requests() == []
    emulator.clock.advance(1000)
    started = emulator.clock.epoch()
    close.get("/activity/email", params={"_limit": 3, "lead_id": "lead_a,lead_b"})
    close.post(
        "/activity/email/?_skip=1",
        json={"_params": {"id__in": ["acti_1", "acti_2"], "_limit": 5}},
        headers={"X-HTTP-Method-Override": "GET"},
    )
    requests.get(close.base + "/me/")  # 401
    close.get("/nowhere/")
    admin.faults()  # admin calls are not logged
    log = emulator.request_log[:]
    assert len(log) == len(emulator.request_log) == 4
    assert [(e.method, e.path, e.status) for e in log] == [
        ("GET", "/api/v1/activity/email", 200),
        ("POST", "/api/v1/activity/email/", 200),
        ("GET", "/api/v1/me/", 401),
        ("GET", "/api/v1/nowhere/", 404),
    ]
    assert log[0].query == {"_limit": "3", "lead_id": "lead_a,lead_b"}
    assert log[1].query == {"_skip": "1", "id__in": "acti_1,acti_2", "_limit": "5"}
    assert [e.group for e in log] == [
        "GET /activity/email/",
        "GET /activity/email/",
        "GET /me/",
        "GET (unknown)",
    ]
    assert all(started - 1 <= e.time <= emulator.clock.epoch() for e in log)  # emulator clock
    assert log[0]["status"] == 200  # entries are subscriptable too
    over_http = admin.requests()
    assert over_http == [e.as_dict() for e in log]
    assert set(over_http[0]) == {
        "time", "method", "path", "query", "status", "group", "answered", "wait",
    }  # fmt: skip
    assert all(e.time <= e.answered and e.wait is None for e in log)
    assert [e.path for e in emulator.request_log] == [e["path"] for e in over_http]
    admin.clear_requests()
    assert admin.requests() == [] and len(emulator.request_log) == 0


# --- admin API -----------------------------------------------------------------------------------


def test_admin_client_email_methods(close: Api) -> None:
    admin = close.server.admin
    emulator = close.server.emulator
    everything = admin.all_emails()
    assert everything == emulator.all_emails() and len(everything) == 150
    slim = admin.all_emails(fields=["id", "date_updated"])
    assert slim == [{"id": e["id"], "date_updated": e["date_updated"]} for e in everything]
    first = everything[0]
    assert admin.get_email(first["id"]) == first
    assert admin.get_email("acti_missing") is None

    lead = first["lead_id"]
    draft = admin.create_email(lead_id=lead, status="draft", subject="Admin draft")
    assert emulator.get_email(draft["id"]) == draft and draft["subject"] == "Admin draft"
    edited = admin.update_email(draft["id"], subject="Edited")
    assert edited["subject"] == "Edited" and edited["date_updated"] >= draft["date_updated"]
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    scheduled = admin.schedule_draft(draft["id"], when)  # a datetime is sent as ISO text
    assert scheduled["status"] == "scheduled"
    assert datetime.fromisoformat(scheduled["date_scheduled"]) == when
    sent = admin.send_email(draft["id"])
    assert sent["status"] == "sent" and sent["envelope"]["message_id"] in sent["message_ids"]
    opened = admin.record_open(sent["id"])
    assert len(opened["opens"]) == 1 and opened["opens_summary"].startswith("Opened 1 time")
    reply = admin.receive_reply(sent["id"])
    assert reply["in_reply_to_id"] == sent["id"] and admin.get_email(sent["id"])["has_reply"]
    with_files = next(e for e in everything if len(e["attachments"]) >= 1)
    trimmed = admin.remove_attachment(with_files["id"], 0)
    assert trimmed["attachments"] == with_files["attachments"][1:]
    other = next(e["lead_id"] for e in everything if e["lead_id"] != lead)
    moved = admin.reassign_lead(reply["id"], other)
    assert moved["lead_id"] == other
    late = admin.add_late_email(30, subject="Late")
    assert late["subject"] == "Late" and late["date_created"] < everything[-1]["date_created"]
    admin.delete_email(late["id"])
    assert admin.get_email(late["id"]) is None

    thread = draft["thread_id"]  # draft -> sent -> replied: two emails, one moved lead
    assert sorted(admin.delete_thread(thread)) == sorted([sent["id"], reply["id"]])
    source, destination = everything[10]["lead_id"], everything[20]["lead_id"]
    if source == destination:
        destination = other
    moving = [e["id"] for e in emulator.all_emails() if e["lead_id"] == source]
    assert sorted(admin.merge_leads(source, destination)) == sorted(moving)
    remaining = [e["id"] for e in emulator.all_emails() if e["lead_id"] == destination]
    assert sorted(admin.delete_lead(destination)) == sorted(remaining)
    assert emulator.get_lead(destination) is None


def test_admin_client_errors(close: Api) -> None:
    admin = close.server.admin
    first = admin.all_emails()[0]
    with pytest.raises(KeyError):
        admin.update_email("acti_missing", subject="x")
    with pytest.raises(KeyError):
        admin.delete_email("acti_missing")
    with pytest.raises(KeyError):
        admin.delete_thread("acti_missing")
    with pytest.raises(KeyError):
        admin.merge_leads("lead_missing", first["lead_id"])
    with pytest.raises(ValueError, match="only drafts"):
        admin.schedule_draft(
            next(e["id"] for e in admin.all_emails() if e["status"] == "sent"),
            "2030-01-01T00:00:00+00:00",
        )
    with pytest.raises(ValueError):
        admin.create_email(lead_id=first["lead_id"], status="lost")
    with pytest.raises(ValueError):
        admin.update_email(first["id"], id="acti_other")
    with pytest.raises(ValueError):
        admin.set_config(bogus=True)
    base = admin.url
    assert requests.get(base + "/nothing").status_code == 404
    bad = requests.post(base + "/emails", data="[1]")
    assert bad.status_code == 400 and "error" in bad.json()
    # action names work as well as the short names
    alias = requests.post(f"{base}/emails/{first['id']}/record_open", json={})
    assert alias.status_code == 200 and len(alias.json()["opens"]) == len(first["opens"]) + 1


def test_admin_config(close: Api) -> None:
    admin = close.server.admin
    config = admin.config()
    assert config["rate"] == 0 and config["max_skip"] == 250000 and config["history_days"] == 20
    changed = admin.set_config(max_skip=50, max_limit=10)
    assert changed["max_skip"] == 50 and changed["max_limit"] == 10
    assert close.server.emulator.config.max_limit == 10
    assert (
        close.get("/activity/email/", params={"_limit": 11})
        .json()["error"]
        .endswith("(max_limit = 10).")
    )
    # without _limit the default (100) is capped at the maximum, as in Close's framework
    # (flask-mongorest: `min(int(params.get("_limit", default_limit)), max_limit)`)
    page = close.get("/activity/email/").json()
    assert len(page["data"]) == 10 and page["has_more"] is True


def test_clock(close: Api) -> None:
    admin = close.server.admin
    emulator = close.server.emulator
    before = admin.clock()
    assert set(before) == {"now", "epoch", "offset_seconds"} and before["offset_seconds"] == 0
    assert abs(before["epoch"] - time.time()) < 2
    after = admin.advance_clock(3 * 3600)
    assert after["offset_seconds"] == 3 * 3600 == emulator.clock.offset
    assert 3 * 3600 <= after["epoch"] - before["epoch"] < 3 * 3600 + 2
    assert datetime.fromisoformat(after["now"]) - datetime.fromisoformat(
        before["now"]
    ) >= timedelta(hours=3)
    # the API's Date header and new data follow the emulator clock
    response = close.get("/me/")
    served = email.utils.parsedate_to_datetime(response.headers["Date"])
    assert abs((served - datetime.now(UTC)).total_seconds() - 3 * 3600) < 3
    lead = admin.all_emails(fields=["lead_id"])[0]["lead_id"]
    made = close.post("/activity/email/", json={"lead_id": lead, "status": "draft"}).json()
    assert datetime.fromisoformat(made["date_created"]) > datetime.now(UTC) + timedelta(hours=2)
    reset = requests.post(admin.url + "/clock", json={"offset_seconds": 0}).json()
    assert reset["offset_seconds"] == 0 and abs(reset["epoch"] - time.time()) < 2
    emulator.clock.set_offset(-60)
    assert admin.clock()["offset_seconds"] == -60


# --- the real CLI --------------------------------------------------------------------------------


def test_emulator_process_runs_the_cli() -> None:
    with EmulatorProcess(["--port", "0", "--emails", "50", "--seed", "1"]) as close:
        assert close.base_url.startswith("http://127.0.0.1:") and close.base_url.endswith("/api/v1")
        assert close.port > 0
        session = requests.Session()
        session.auth = ("cli-key", "")
        page = session.get(close.base_url + "/activity/email/", params={"_limit": 100})
        assert page.status_code == 200
        data = page.json()["data"]
        assert len(data) == 50 and page.json()["has_more"] is False
        assert rate_limit(page) == 20  # the CLI default
        assert close.admin.all_emails() == data
        assert isinstance(close.admin, AdminClient)
        assert session.get(close.base_url + "/me/").json()["id"].startswith("user_")
        assert close.admin.requests()[-1]["path"] == "/api/v1/me/"
        code = close.stop()
    assert code == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(close.base_url + "/me/", auth=("k", ""), timeout=2)


def rate_limit(response: requests.Response) -> int:
    return int(response.headers["RateLimit"].split(",")[0].split("=")[1])


def test_cli_options_and_reused_database(tmp_path) -> None:
    db = str(tmp_path / "close.sqlite")
    args = [
        "--emails", "40", "--seed", "2", "--api-key", "secret", "--rate", "7",
        "--max-limit", "20", "--max-skip", "30", "--retention-days", "5", "--history-days", "10",
        "--legacy-rate-headers", "--fractional-reset", "--no-thread-delete-email-events",
        "--no-naive-event-timestamps", "--naive-write-timestamps", "--latency-ms", "1",
        "--db", db,
    ]  # fmt: skip
    with EmulatorProcess(args) as close:
        config = close.admin.config()
        assert config == {
            "api_key": "secret",
            "rate": 7.0,
            "rate_window": 1.0,
            "rate_fractional_reset": True,
            "legacy_rate_headers": True,
            "max_skip": 30,
            "max_limit": 20,
            "event_max_limit": 50,
            "retention_days": 5.0,
            "history_days": 10,
            "history_shape": "recent",
            "burst_fraction": 0.9,
            "request_log_size": 100_000,
            "thread_delete_email_events": False,
            "naive_event_timestamps": False,
            "naive_write_timestamps": True,
        }
        assert close.admin.faults()["latency_ms"] == 1.0
        url = close.base_url + "/activity/email/"
        assert requests.get(url, auth=("other", "")).status_code == 401
        response = requests.get(url, auth=("secret", ""), params={"_limit": 20})
        assert len(response.json()["data"]) == 20 and "X-Rate-Limit-Reset" in response.headers
        assert requests.get(url, auth=("secret", ""), params={"_skip": 31}).status_code == 400
        first_ids = [e["id"] for e in close.admin.all_emails()]
    assert len(first_ids) == 40
    # --reuse-db: the same --emails, --seed and history settings skip generation and serve the
    # same data; another history shape is other data
    reuse = ["--seed", "2", "--db", db, "--reuse-db", "--history-days", "10"]
    with EmulatorProcess(["--emails", "40", *reuse]) as again:
        assert [e["id"] for e in again.admin.all_emails()] == first_ids
    with EmulatorProcess(["--emails", "40", *reuse, "--history-shape", "uniform"]) as shaped:
        assert [e["id"] for e in shaped.admin.all_emails()] != first_ids
    with EmulatorProcess(["--emails", "41", "--seed", "2", "--db", db, "--reuse-db"]) as other:
        assert len(other.admin.all_emails()) == 41


def test_process_start_failure_is_reported() -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        EmulatorProcess(["--emails", "not-a-number"], timeout=30)


def test_admin_emails_stream_is_valid_json(close: Api) -> None:
    raw = requests.get(close.server.admin.url + "/emails")
    assert raw.headers.get("Transfer-Encoding") == "chunked"
    assert len(json.loads(raw.content)) == 150


def test_request_counts_cover_more_than_the_log_keeps(close: Api) -> None:
    emulator = close.server.emulator
    admin = close.server.admin
    admin.clear_requests()
    admin.set_config(request_log_size=3)
    for _ in range(4):
        close.get("/me/")
    requests.get(close.base + "/me/")  # 401
    assert len(emulator.request_log) == 3 and emulator.request_log.maxlen == 3
    assert len(admin.requests()) == 3
    assert admin.request_counts() == {"total": 5, "by_status": {"200": 4, "401": 1}, "kept": 3}
    admin.set_config(request_log_size=10)
    close.get("/me/")
    assert len(emulator.request_log) == 4  # the three kept plus the new one
    admin.clear_requests()
    assert admin.request_counts() == {"total": 0, "by_status": {}, "kept": 0}
    with pytest.raises(ValueError):
        admin.set_config(request_log_size=0)


def test_request_log_size_option() -> None:
    with EmulatorProcess(["--emails", "20", "--request-log-size", "2"]) as close:
        assert close.admin.config()["request_log_size"] == 2
        for _ in range(3):
            requests.get(close.base_url + "/me/", auth=("k", ""))
        assert len(close.admin.requests()) == 2 and close.admin.request_counts()["total"] == 3
