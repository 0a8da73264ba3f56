"""Helpers for the sync's integration tests: run the CLI, read the warehouse, compare."""

import contextlib
import io
import os
from datetime import UTC, datetime
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any

from pipelines.close_emails import main
from pipelines.runner import make_pipeline

EMAIL_FIELDS = (
    "id", "lead_id", "contact_id", "user_id", "organization_id", "direction", "status",
    "subject", "sender", "body_text", "body_html", "date_created", "date_updated", "date_sent",
    "date_scheduled", "activity_at", "thread_id", "in_reply_to_id", "has_reply", "template_id",
    "sequence_id", "sequence_name", "sequence_subscription_id", "bulk_email_action_id",
    "created_by", "updated_by",
)  # fmt: skip
TIMESTAMPS = {"date_created", "date_updated", "date_sent", "date_scheduled", "activity_at"}
CHILD_VIEWS = (
    "email_recipients",
    "email_attachments",
    "email_opens",
    "email_send_attempts",
    "email_message_ids",
)


def run_cli(*args: str, base_url: str | None = None) -> tuple[int, str, str]:
    """Runs `python -m pipelines.close_emails` in-process with the test's pipeline options."""
    if base_url:
        os.environ["SOURCES__CLOSE__BASE_URL"] = base_url
    common = [
        "--destination", os.environ["DESTINATION"],
        "--dataset", os.environ["DATASET"],
        "--pipeline-name", os.environ["PIPELINE_NAME"],
    ]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([*args, *common])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def sync(base_url: str, *extra: str) -> str:
    """Runs `sync` and fails the test unless it succeeded; returns its summary."""
    code, out, err = run_cli("sync", *extra, base_url=base_url)
    assert code == 0, f"sync failed ({code}): {err}"
    return out


def query(sql: str) -> list[dict[str, Any]]:
    """Rows of `sql` on the test's warehouse; `{ds}` is the dataset."""
    pipeline = make_pipeline(
        os.environ["PIPELINE_NAME"], os.environ["DESTINATION"], os.environ["DATASET"]
    )
    with pipeline.sql_client() as client:
        with client.execute_query(sql.format(ds=client.fully_qualified_dataset_name())) as cur:
            return rows_of(cur)


def rows_of(cursor: Any) -> list[dict[str, Any]]:
    """A dlt cursor's rows as dicts; naive timestamps (MySQL/MariaDB's, which hold UTC,
    as the README says) as aware UTC ones, so that rows compare equal on every engine."""
    names = list(cursor.columns_schema)
    return [
        {name: _aware(value) for name, value in zip(names, row, strict=True)}
        for row in cursor.fetchall()
    ]


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def expected_recipients(email: dict[str, Any]) -> set[tuple[Any, ...]]:
    envelope = email.get("envelope") or {}
    roles = ("from", "sender", "to", "cc", "bcc", "reply_to")
    rows = set()
    if any(envelope.get(role) for role in roles):
        for role in roles:
            for position, item in enumerate(envelope.get(role) or []):
                rows.add((email["id"], role, position, item["email"] or None, item["name"] or None))
        return rows
    name, address = parseaddr(email.get("sender") or "")
    if address:
        rows.add((email["id"], "from", 0, address, name or None))
    for role in ("to", "cc", "bcc"):
        for position, value in enumerate(email.get(role) or []):
            name, address = parseaddr(value)
            rows.add((email["id"], role, position, address or value, name or None))
    return rows


def assert_warehouse_equals(emails: list[dict[str, Any]], include_bodies: bool = True) -> None:
    """Every table and child view holds exactly what `emails` (Close's JSON) says."""
    stored = {row["id"]: row for row in query("SELECT * FROM {ds}.emails")}
    assert len(stored) == len(query("SELECT DISTINCT id FROM {ds}.emails"))
    assert set(stored) == {e["id"] for e in emails}
    for email in emails:
        row = stored[email["id"]]
        for field in EMAIL_FIELDS:
            expected = email.get(field)
            if field in TIMESTAMPS:
                expected = ts(expected)
            if field.startswith("body_") and not include_bodies:
                expected = None
            assert row[field] == expected, (email["id"], field, row[field], expected)
        envelope = email.get("envelope") or {}
        assert row["envelope__message_id"] == envelope.get("message_id")
        assert row["envelope__date"] == envelope.get("date")
        expected_date = parsedate_to_datetime(envelope["date"]) if envelope.get("date") else None
        assert row["envelope__date_utc"] == expected_date, email["id"]

    recipients = {
        (r["email_id"], r["role"], r["position"], r["email"], r["name"])
        for r in query("SELECT * FROM {ds}.email_recipients")
    }
    assert recipients == set().union(*(expected_recipients(e) for e in emails))
    attachments = {
        (r["email_id"], r["position"], r["filename"], r["content_type"], r["size"], r["url"])
        for r in query("SELECT * FROM {ds}.email_attachments")
    }
    assert attachments == {
        (e["id"], i, a.get("filename"), a.get("content_type"), a.get("size"), a.get("url"))
        for e in emails
        for i, a in enumerate(e.get("attachments") or [])
    }
    opens = {
        (r["email_id"], r["position"], r["opened_at"], r["opened_by"], r["ip_address"])
        for r in query("SELECT * FROM {ds}.email_opens")
    }
    assert opens == {
        (e["id"], i, ts(o.get("opened_at")), o.get("opened_by"), o.get("ip_address"))
        for e in emails
        for i, o in enumerate(e.get("opens") or [])
    }
    attempts = {
        (r["email_id"], r["position"], r["date"], r["error_class"])
        for r in query("SELECT * FROM {ds}.email_send_attempts")
    }
    assert attempts == {
        (e["id"], i, ts(a.get("date")), a.get("error_class"))
        for e in emails
        for i, a in enumerate(e.get("send_attempts") or [])
    }
    message_ids = {
        (r["email_id"], r["kind"], r["position"], r["value"])
        for r in query("SELECT * FROM {ds}.email_message_ids")
    }
    assert message_ids == {
        (e["id"], kind, i, value)
        for e in emails
        for kind, values in (
            ("message_id", e.get("message_ids")),
            ("reference", e.get("references")),
        )
        for i, value in enumerate(values or [])
    }


def execute(sql: str) -> None:
    """Runs a statement on the test's warehouse; `{ds}` is the dataset."""
    pipeline = make_pipeline(
        os.environ["PIPELINE_NAME"], os.environ["DESTINATION"], os.environ["DATASET"]
    )
    with pipeline.sql_client() as client:
        client.execute_sql(sql.format(ds=client.fully_qualified_dataset_name()))
