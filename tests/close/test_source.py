"""Unit tests of the source's pieces that need no server: shaping and hints."""

from datetime import UTC, datetime

import dlt

from sources.close import _emails_resource
from sources.close.client import endpoint_group, parse_ratelimit_header
from sources.close.rows import email_to_row
from sources.close.timestamps import parse_rfc2822, parse_timestamp


def test_timestamps_in_every_close_format() -> None:
    expected = datetime(2021, 9, 17, 21, 29, 12, tzinfo=UTC)
    for text in ("2021-09-17T21:29:12+00:00", "2021-09-17T21:29:12.000000+00:00",
                 "2021-09-17T21:29:12Z", "2021-09-17T21:29:12", "2021-09-18T08:29:12+11:00"):  # fmt: skip
        assert parse_timestamp(text) == expected, text
    assert parse_rfc2822("Sat, 18 Sep 2021 08:29:12 +1100 (added by x@y.com)") == expected
    assert parse_rfc2822("not a date") is None


def test_recipients_fall_back_to_top_level_fields_without_an_envelope() -> None:
    row = email_to_row(
        {
            "id": "acti_1",
            "envelope": None,
            "sender": "Jean Lafleur <john@airbyte.io>",
            "to": ["a@x.com"],
            "cc": [],
            "bcc": ["Bob <b@x.com>"],
            "date_created": None,
        }  # fmt: skip
    )
    assert row["recipients"] == [
        {"email_id": "acti_1", "role": "from", "position": 0, "email": "john@airbyte.io", "name": "Jean Lafleur"},
        {"email_id": "acti_1", "role": "to", "position": 0, "email": "a@x.com", "name": None},
        {"email_id": "acti_1", "role": "bcc", "position": 0, "email": "b@x.com", "name": "Bob"},
    ]  # fmt: skip
    assert row["envelope"] == {"date_utc": None}


def test_ratelimit_header_and_endpoint_groups() -> None:
    assert parse_ratelimit_header("limit=160; remaining=159; reset=8") == {
        "limit": 160, "remaining": 159, "reset": 8}  # fmt: skip
    assert parse_ratelimit_header("limit=100, remaining=0, reset=0.5")["reset"] == 0.5
    assert endpoint_group("GET", "/activity/email/acti_abc123/") == "GET /activity/email/{id}/"


def test_one_load_with_two_versions_keeps_the_newest(tmp_path) -> None:  # noqa: ANN001
    older = email_to_row({"id": "acti_1", "subject": "old", "date_updated": "2024-01-01T00:00:00Z",
                          "attachments": [{"filename": "a"}, {"filename": "b"}]})  # fmt: skip
    newer = email_to_row({"id": "acti_1", "subject": "new", "date_updated": "2024-01-02T00:00:00Z",
                          "attachments": [{"filename": "c"}]})  # fmt: skip
    pipeline = dlt.pipeline(
        "two_versions",
        destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")),
        dataset_name="close",
        pipelines_dir=str(tmp_path / "dlt"),
    )
    pipeline.run(_emails_resource(lambda: iter([[newer, older]]), "emails"))
    with pipeline.sql_client() as client:
        assert client.execute_sql("SELECT subject FROM emails") == [("new",)]
        assert client.execute_sql("SELECT filename FROM emails__attachments") == [("c",)]
