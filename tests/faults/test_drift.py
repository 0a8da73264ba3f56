"""Schema drift from Close, and every shape of Close's API description, through the sync.

The policy (README, "Schema drift"): a new field becomes a new column and the load goes on;
a field whose type changes keeps its row (a value that does not fit the column's type goes
to a `<column>__v_text` variant column if the field is one this code does not know, and is
NULL if it is a known typed column); a field that disappears is NULL from then on.
"""

import json
import re

import requests

from close_emulator import EmulatorServer
from tests.close.utils import query, run_cli

from .common import assert_exact

NAIVE_MICROSECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


def sync_ok(close: EmulatorServer) -> None:
    code, _out, err = run_cli("sync", base_url=close.base_url)
    assert code == 0, err[-3000:]


def columns() -> set[str]:
    return set(query("SELECT * FROM {ds}.emails LIMIT 1")[0])


def row(email_id: str) -> dict:
    rows = query(f"SELECT * FROM {{ds}}.emails WHERE id = '{email_id}'")
    assert len(rows) == 1, (email_id, rows)
    return rows[0]


def test_fields_that_appear_change_type_and_disappear(
    make_emulator,
    sync_env,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=60, seed=61)
    emulator = close.emulator
    sync_ok(close)
    a, b, c, d = (e["id"] for e in emulator.all_emails()[:4])

    # a new field appears: a new column, the load goes on
    emulator.update_email(a, sentiment="positive", reply_score=3)
    sync_ok(close)
    assert {"sentiment", "reply_score"} <= columns()
    assert (row(a)["sentiment"], row(a)["reply_score"]) == ("positive", 3)
    assert row(b)["sentiment"] is None
    assert_exact(close)

    # the field changes type between runs: the row stays, the value is kept
    emulator.update_email(b, sentiment=7, reply_score="high")
    sync_ok(close)
    stored = row(b)
    assert stored["sentiment"] == "7"  # a number fits a text column as text
    assert stored["reply_score"] is None and stored["reply_score__v_text"] == "high"
    assert row(a)["reply_score"] == 3  # earlier rows keep their typed values

    # fields disappear: NULL from then on, for a new field and for a known one
    emulator.remove_field(a, "sentiment")
    emulator.remove_field(c, "subject")
    sync_ok(close)
    assert row(a)["sentiment"] is None and row(a)["reply_score"] == 3
    assert row(c)["subject"] is None
    assert_exact(close)

    # a known typed column sent with another type: the row and its child rows stay
    emulator.update_email(d, has_reply="sometimes", subject={"text": "an object now"})
    sync_ok(close)
    stored = row(d)
    assert stored["has_reply"] is None  # a bool column cannot hold it: NULL, the row stays
    assert json.loads(stored["subject"]) == {"text": "an object now"}  # text keeps it as JSON
    recipients = query(f"SELECT COUNT(*) AS n FROM {{ds}}.email_recipients WHERE email_id = '{d}'")
    assert recipients[0]["n"] >= 1


def test_every_documented_shape_loads_exactly(make_emulator, sync_env) -> None:  # noqa: ANN001
    close = make_emulator(emails=200, seed=62, naive_write_timestamps=True)
    emails = close.emulator.all_emails()
    one_object = [e for e in emails if isinstance(e["body_html_quoted"], dict)]
    assert one_object and all(e["body_text_quoted"] is None for e in one_object)
    attachments = [a for e in emails for a in e["attachments"]]
    assert any(a["inline_only"] for a in attachments) and any(a["content_id"] for a in attachments)
    assert all("content_id" in a and "inline_only" in a for a in attachments)

    # a create answer carries timestamps without offset, with microseconds
    lead = emails[0]["lead_id"]
    made = requests.post(
        f"{close.base_url}/activity/email/", auth=("api_x", ""), timeout=10,
        json={"lead_id": lead, "status": "draft", "subject": "naive stamps"},
    ).json()  # fmt: skip
    for key in ("date_created", "date_updated"):
        assert NAIVE_MICROSECONDS.match(made[key]), made[key]
    updated = requests.put(
        f"{close.base_url}/activity/email/{made['id']}/", auth=("api_x", ""), timeout=10,
        json={"subject": "naive stamps, edited"},
    ).json()  # fmt: skip
    assert NAIVE_MICROSECONDS.match(updated["date_updated"]), updated

    sync_ok(close)
    assert_exact(close)
    stored = row(one_object[0]["id"])
    assert stored["body_text_quoted"] is None
    html_quoted = stored["body_html_quoted"]
    html_quoted = json.loads(html_quoted) if isinstance(html_quoted, str) else html_quoted
    assert html_quoted == one_object[0]["body_html_quoted"]
    assert row(made["id"])["subject"] == "naive stamps, edited"
