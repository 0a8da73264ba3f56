"""An empty string stays an empty string, and NULL stays NULL, on every destination.

dlt's csv COPY into PostgreSQL loaded every quoted "" as NULL (FORCE_NULL on each nullable
column); pipelines/postgres_copy.py loads the emails tables without it. One email has ""
in every text field the tables keep as given, its twin has null there: the two must come
back different, and the whole warehouse must equal the emulator's truth.
Recipient names are the exception by design: shaping stores an empty name as NULL
(sources/close/rows.py, `_recipients`), on every destination alike.
"""

from typing import Any

import pytest

from close_emulator import EmulatorServer
from tests.close.utils import query, sync
from tests.destinations import every_destination  # noqa: F401  (DuckDB, PostgreSQL, MariaDB)

from .common import assert_exact

TEXT_FIELDS = ("subject", "body_text", "body_html", "sequence_name", "template_name",
               "user_name", "created_by_name")  # fmt: skip


def email_fields(value: str | None) -> dict[str, Any]:
    """An email whose text fields, envelope, attachment and message ids all hold `value`."""
    return {
        **dict.fromkeys(TEXT_FIELDS, value),
        "status": "sent",
        "envelope": {"subject": value, "message_id": value, "date": None,
                     "from": [{"email": "a@example.com", "name": value}],
                     "to": [{"email": "b@example.com", "name": value}]},
        "attachments": [{"filename": value, "content_type": value, "size": 0, "url": value,
                         "content_id": value, "inline_only": False}],
        "message_ids": [value],
        "references": [value],
    }  # fmt: skip


@pytest.fixture
def close(make_emulator, sync_env) -> EmulatorServer:  # noqa: ANN001
    return make_emulator(emails=5, seed=9)


def test_empty_strings_and_nulls_load_apart(close: EmulatorServer, destination: str) -> None:
    lead = close.emulator.all_emails()[0]["lead_id"]
    blank = close.emulator.create_email(lead_id=lead, **email_fields(""))
    null = close.emulator.create_email(lead_id=lead, **email_fields(None))

    sync(close.base_url)

    columns = ", ".join((*TEXT_FIELDS, "envelope__subject", "envelope__message_id"))
    rows = {r["id"]: r for r in query(f"SELECT id, {columns} FROM {{ds}}.emails")}
    assert {k: v for k, v in rows[blank["id"]].items() if k != "id"} == dict.fromkeys(
        (*TEXT_FIELDS, "envelope__subject", "envelope__message_id"), ""
    ), destination
    assert set(list(rows[null["id"]].values())[1:]) == {None}
    attachments = query("SELECT email_id, filename, content_type, url FROM {ds}.email_attachments")
    by_email = {r["email_id"]: (r["filename"], r["content_type"], r["url"]) for r in attachments}
    assert by_email[blank["id"]] == ("", "", "") and by_email[null["id"]] == (None, None, None)
    values = query("SELECT email_id, value FROM {ds}.email_message_ids")
    assert sorted(r["value"] for r in values if r["email_id"] == blank["id"]) == ["", ""]
    assert_exact(close)  # every other value too, and nothing duplicated or orphaned
