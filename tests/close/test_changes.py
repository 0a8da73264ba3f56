"""Change capture: updates and deletions from the event log, late mail, gaps, backfills."""

import re
from datetime import datetime, timedelta

import pytest

from close_emulator import EmulatorServer
from sources.close.changes import EventScan
from sources.close.client import CloseClient, Stopped
from tests.destinations import every_destination  # noqa: F401  (DuckDB, PostgreSQL, MariaDB)

from .utils import assert_warehouse_equals, execute, query, run_cli, sync

DAY = 24 * 3600


@pytest.fixture
def close(make_emulator, sync_env) -> EmulatorServer:  # noqa: ANN001
    server = make_emulator(emails=400, seed=11)
    # an event shortly before the first sync, so the event log demonstrably reaches back
    server.emulator.create_email(lead_id="lead_seed", status="inbox", subject="seed")
    return server


def old_emails(close: EmulatorServer, **match: object) -> list[dict]:
    """Emails created more than 60 days ago matching `match`, oldest first."""
    cutoff = close.emulator.clock.now() - timedelta(days=60)
    found = [
        e
        for e in close.emulator.all_emails()
        if datetime.fromisoformat(e["date_created"]) < cutoff
        and all(e.get(k) == v for k, v in match.items())
    ]
    return sorted(found, key=lambda e: e["date_created"])


def status(key: str) -> str:
    code, out, _ = run_cli("status")
    assert code == 0
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return lines.get(key, "")


def test_changes_to_old_emails_reach_the_warehouse(close: EmulatorServer) -> None:
    emulator = close.emulator
    months_ago = (emulator.clock.now() - timedelta(days=120)).isoformat()
    draft, scheduled = (
        emulator.create_email(
            lead_id="lead_old",
            status=status,
            date_created=months_ago,
            date_scheduled=None if status == "draft" else months_ago,
        )  # fmt: skip
        for status in ("draft", "scheduled")
    )
    sync(close.base_url)
    sent = old_emails(close, status="sent", direction="outgoing")
    opened, replied, edited, reassigned = sent[0], sent[1], sent[2], sent[3]
    emulator.record_open(opened["id"])
    reply = emulator.receive_reply(replied["id"])
    emulator.update_email(edited["id"], subject="Edited subject ✏️")
    new_lead = old_emails(close)[-1]["lead_id"]
    emulator.reassign_lead(reassigned["id"], new_lead)
    with_attachments = next(e for e in sent[4:] if e.get("attachments"))
    emulator.remove_attachment(with_attachments["id"], 0)
    emulator.schedule_draft(draft["id"], emulator.clock.now() + timedelta(days=2))
    emulator.send_email(scheduled["id"])

    out = sync(close.base_url)
    assert_warehouse_equals(emulator.all_emails())
    statuses = query("SELECT id, status FROM {{ds}}.emails WHERE id IN ('{}', '{}') ORDER BY status".format(draft["id"], scheduled["id"]))  # fmt: skip
    assert statuses == [{"id": draft["id"], "status": "scheduled"},
                        {"id": scheduled["id"], "status": "sent"}]  # fmt: skip
    row = query(f"SELECT has_reply, lead_id FROM {{ds}}.emails WHERE id = '{replied['id']}'")
    assert row == [{"has_reply": True, "lead_id": replied["lead_id"]}]
    assert query(f"SELECT id FROM {{ds}}.emails WHERE id = '{reply['id']}'")
    assert query(f"SELECT lead_id FROM {{ds}}.emails WHERE id = '{reassigned['id']}'") == [
        {"lead_id": new_lead}
    ]
    assert "emails.updated: " in out and "emails.updated: 0" not in out


def test_deleted_email_disappears_with_all_child_rows(close: EmulatorServer) -> None:
    sync(close.base_url)
    victim = next(
        e for e in old_emails(close) if e.get("attachments") and (e.get("envelope") or {}).get("to")
    )
    close.emulator.delete_email(victim["id"])
    out = sync(close.base_url)
    assert "emails.deleted: 1" in out
    for view, column in (("emails", "id"), ("email_recipients", "email_id"),
                         ("email_attachments", "email_id"), ("email_message_ids", "email_id")):  # fmt: skip
        assert query(f"SELECT * FROM {{ds}}.{view} WHERE {column} = '{victim['id']}'") == []
    assert_warehouse_equals(close.emulator.all_emails())


@pytest.mark.parametrize("per_email_events", [True, False])
def test_deleted_thread_and_deleted_lead_take_their_emails(
    make_emulator,
    sync_env,
    per_email_events: bool,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=300, seed=5, thread_delete_email_events=per_email_events)
    close.emulator.create_email(lead_id="lead_seed", status="inbox", subject="seed")
    sync(close.base_url)
    emails = close.emulator.all_emails()
    threads = {}
    for e in emails:
        threads.setdefault(e["thread_id"], []).append(e)
    thread_id = max(threads, key=lambda t: len(threads[t]))
    gone_thread = close.emulator.delete_thread(thread_id)
    lead_id = next(e["lead_id"] for e in emails if e["thread_id"] != thread_id)
    gone_lead = close.emulator.delete_lead(lead_id)
    assert len(gone_thread) > 1 and gone_lead
    sync(close.base_url)
    stored = {r["id"] for r in query("SELECT id FROM {ds}.emails")}
    assert not stored & (set(gone_thread) | set(gone_lead))
    assert_warehouse_equals(close.emulator.all_emails())


def test_merged_leads_move_their_emails(close: EmulatorServer) -> None:
    sync(close.base_url)
    leads = sorted({e["lead_id"] for e in close.emulator.all_emails() if e["lead_id"]})
    moved = close.emulator.merge_leads(leads[0], leads[1])
    assert moved
    sync(close.base_url)
    rows = query("SELECT DISTINCT lead_id FROM {{ds}}.emails WHERE id IN ({})".format(", ".join(f"'{i}'" for i in moved)))  # fmt: skip
    assert rows == [{"lead_id": leads[1]}]
    assert_warehouse_equals(close.emulator.all_emails())


def test_late_arriving_email_appears(close: EmulatorServer) -> None:
    sync(close.base_url)
    late = close.emulator.add_late_email(days_old=45, lead_id="lead_late")
    out = sync(close.base_url)
    assert query(f"SELECT id FROM {{ds}}.emails WHERE id = '{late['id']}'")
    assert "emails.new: 1" in out
    assert_warehouse_equals(close.emulator.all_emails())


def test_gap_beyond_retention_is_detected_and_reconciled(close: EmulatorServer) -> None:
    sync(close.base_url)
    emulator = close.emulator
    deleted = old_emails(close)[:3]
    for email in deleted:
        emulator.delete_email(email["id"])
    emulator.record_open(old_emails(close, status="sent")[0]["id"])
    emulator.clock.advance(40 * DAY)  # the events above fall out of Close's 30-day log
    out = sync(close.base_url)
    assert "reconciled_because: the last event scan was" in out
    assert "emails.deleted: 3" in out
    assert_warehouse_equals(emulator.all_emails())
    out = sync(close.base_url)  # back to normal: no reconciliation, nothing new
    assert "reconciled_because" not in out and "emails.new: 0" in out


def test_gap_is_detected_from_the_event_log_itself(make_emulator, sync_env) -> None:  # noqa: ANN001
    close = make_emulator(emails=300, seed=2, retention_days=1)  # shorter than our 30-day guard
    close.emulator.create_email(lead_id="lead_seed", status="inbox", subject="seed")
    sync(close.base_url)
    victim = close.emulator.all_emails()[5]
    close.emulator.delete_email(victim["id"])
    close.emulator.clock.advance(2 * DAY)
    out = sync(close.base_url)
    assert "no longer reaches back" in out
    assert not query(f"SELECT id FROM {{ds}}.emails WHERE id = '{victim['id']}'")
    assert_warehouse_equals(close.emulator.all_emails())


def test_reconcile_on_demand(close: EmulatorServer) -> None:
    sync(close.base_url)
    out = sync(close.base_url, "--reconcile")
    assert "reconciled_because: reconciliation was requested" in out
    assert "emails.new: 0" in out
    assert_warehouse_equals(close.emulator.all_emails())


def test_backfill_restores_a_range_and_keeps_the_nightly_cursors(close: EmulatorServer) -> None:
    sync(close.base_url)
    cursors = (status("cursor.date_created"), status("cursor.event_log"))
    emulator = close.emulator
    now = emulator.clock.now()
    start, end = now - timedelta(days=300), now - timedelta(days=100)

    def in_range(e: dict) -> bool:
        return bool(e["activity_at"]) and start <= datetime.fromisoformat(e["activity_at"]) < end

    inside = [e for e in emulator.all_emails() if in_range(e)]
    assert len(inside) > 20
    # the warehouse lost rows, and Close lost emails without the log telling us
    lost = [e["id"] for e in inside[:5]]
    query_ids = ", ".join(f"'{i}'" for i in lost)
    execute(f"DELETE FROM {{ds}}.emails WHERE id IN ({query_ids})")
    for email in inside[5:8]:
        emulator.delete_email(email["id"])
    emulator.set_config(retention_days=0)  # purge the log: only the backfill can find these

    code, out, err = run_cli(
        "backfill", "--start", start.isoformat(), "--end", end.isoformat(), base_url=close.base_url
    )
    assert code == 0, err
    assert "emails.deleted: 3" in out
    expected = {e["id"] for e in emulator.all_emails() if in_range(e)}
    # the summary counts the rows of every window chunk, not only of the last one
    loaded = int(re.search(r"^loaded_rows\.emails: (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert loaded >= len(expected)
    stored = {r["id"]: r for r in query("SELECT id, activity_at FROM {ds}.emails")}
    assert expected == {
        i for i, r in stored.items() if r["activity_at"] and start <= r["activity_at"] < end
    }
    assert (status("cursor.date_created"), status("cursor.event_log")) == cursors


def test_usage_errors_exit_2(sync_env) -> None:  # noqa: ANN001
    for args in (
        ("backfill", "--start", "yesterday", "--end", "2024-01-01"),
        ("backfill", "--start", "2024-02-01", "--end", "2024-01-01"),
        ("sync", "--destination", "oracle"),
    ):
        code, _out, err = run_cli(*args)
        assert code == 2, args
        assert "usage:" in err and "error:" in err


def test_an_event_scan_finds_changed_ids_and_raises_its_errors_in_the_caller(
    close: EmulatorServer,
) -> None:
    """`EventScan` reads the log in the background; what it found, and what went wrong,
    reaches whoever asks for the ids."""
    client = CloseClient("test-key", close.base_url)
    since = client.server_now() - timedelta(seconds=1)
    old = old_emails(close)
    close.emulator.update_email(old[0]["id"], subject="changed after the walk")
    close.emulator.delete_email(old[1]["id"])
    scan = EventScan(client, since, client.server_now())
    assert scan.changed_ids(warehouse=None) >= {old[0]["id"], old[1]["id"]}
    assert scan.reaches_start()  # the log holds the changes just made

    client.stop.set()  # every request of a scan started now is refused
    stopped = EventScan(client, since, client.last_server_time())
    with pytest.raises(Stopped):
        stopped.changed_ids(warehouse=None)
