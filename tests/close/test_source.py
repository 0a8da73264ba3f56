"""Unit tests of the source's pieces that need no server: shaping and hints."""

from datetime import UTC, datetime

import dlt
import pytest

from sources.close import _emails_resource
from sources.close.client import endpoint_group, parse_ratelimit_header
from sources.close.prefetch import Prefetch
from sources.close.rows import combine, count_emails, deletion_items, finish, preshape, shape
from sources.close.timestamps import parse_rfc2822, parse_timestamp, rfc2822_column
from sources.close.walk import Page


def test_timestamps_in_every_close_format() -> None:
    expected = datetime(2021, 9, 17, 21, 29, 12, tzinfo=UTC)
    for text in ("2021-09-17T21:29:12+00:00", "2021-09-17T21:29:12.000000+00:00",
                 "2021-09-17T21:29:12Z", "2021-09-17T21:29:12", "2021-09-18T08:29:12+11:00"):  # fmt: skip
        assert parse_timestamp(text) == expected, text
    assert parse_rfc2822("Sat, 18 Sep 2021 08:29:12 +1100 (added by x@y.com)") == expected
    assert parse_rfc2822("not a date") is None
    headers = ["Wed, 18 Nov 2026 12:39:47 -0300", "Sun, 1 Nov 2026 10:20:45 -0500", None, "",
               "Sat, 18 Sep 2021 08:29:12 +1100 (added by x@y.com)", "not a date", 7,
               "3 Dec 2026 21:33:32 GMT", "Thu, 03 Dec 2026 21:33 +0200"]  # fmt: skip
    for column in (rfc2822_column(headers), rfc2822_column(headers[:2])):  # arrow alone, and not
        assert column.to_pylist() == [parse_rfc2822(h) for h in headers[: len(column)]]


def tables(items: list) -> dict[str, list[dict]]:
    """The rows of `shape`'s items, by table."""
    return {item.meta.hints["table_name"]: item.data.to_pylist() for item in items}


def test_recipients_fall_back_to_top_level_fields_without_an_envelope() -> None:
    email = {"id": "acti_1", "envelope": None, "sender": "Jean Lafleur <john@airbyte.io>",
             "to": ["a@x.com"], "cc": [], "bcc": ["Bob <b@x.com>"], "date_created": None}  # fmt: skip
    rows = tables(shape([email], include_bodies=True))
    recipients = [(r["email_id"], r["role"], r["position"], r["email"], r["name"])
                  for r in rows["emails__recipients"]]  # fmt: skip
    assert recipients == [
        ("acti_1", "from", 0, "john@airbyte.io", "Jean Lafleur"),
        ("acti_1", "to", 0, "a@x.com", None),
        ("acti_1", "bcc", 0, "b@x.com", "Bob"),
    ]
    assert rows["emails"][0]["envelope__date_utc"] is None
    # an empty list is one marker row, which makes the merge drop the email's stored rows
    assert [(r["_slot"], r["_deleted"]) for r in rows["emails__attachments"]] == [(-1, True)]


def test_unknown_fields_become_columns_and_counts_skip_markers() -> None:
    email = {"id": "acti_1", "date_updated": "2024-01-02T00:00:00Z", "new_flag": True,
             "new_nested": {"a": 1}, "envelope": {"date": "x", "new_header": "h"}}  # fmt: skip
    emails = tables(shape([email], include_bodies=False))["emails"]
    assert emails[0]["new_flag"] is True
    assert emails[0]["new_nested"] == '{"a":1}'
    assert emails[0]["envelope__new_header"] == "h"
    items = shape([email], True) + deletion_items(["acti_2"], datetime(2024, 1, 3, tzinfo=UTC))
    assert count_emails(items) == 1


def test_ratelimit_header_and_endpoint_groups() -> None:
    assert parse_ratelimit_header("limit=160; remaining=159; reset=8") == {
        "limit": 160, "remaining": 159, "reset": 8}  # fmt: skip
    assert parse_ratelimit_header("limit=100, remaining=0, reset=0.5")["reset"] == 0.5
    assert endpoint_group("GET", "/activity/email/acti_abc123/") == "GET /activity/email/{id}/"


def test_a_batch_shaped_ahead_equals_one_shaped_in_the_load() -> None:
    emails = [
        {"id": "acti_1", "date_updated": "2024-01-02T00:00:00Z", "new_flag": True,
         "attachments": [{"filename": "a"}], "envelope": {"from": [{"email": "a@x.com"}]}},
        {"id": "acti_2", "date_updated": "2024-01-01T00:00:00Z", "opens": []},
        {"id": "acti_1", "date_updated": "2024-01-01T00:00:00Z", "subject": "older"},
    ]  # fmt: skip
    assert tables(finish(preshape(emails, True))) == tables(shape(emails, True))
    assert tables(finish(preshape(emails, False))) == tables(shape(emails, False))


# `preshape`: shaped ahead of the load (sources/close/prefetch.py); a batch holding an email
# already shaped for the load is shaped again, as `shape` does
SHAPERS = {"shape": shape, "preshape": lambda emails, bodies: finish(preshape(emails, bodies))}


@pytest.mark.parametrize("shaper", SHAPERS)
def test_one_load_with_two_versions_keeps_the_newest(tmp_path, shaper: str) -> None:  # noqa: ANN001
    older = {"id": "acti_1", "subject": "old", "date_updated": "2024-01-01T00:00:00Z",
             "attachments": [{"filename": "a"}, {"filename": "b"}]}  # fmt: skip
    newer = {"id": "acti_1", "subject": "new", "date_updated": "2024-01-02T00:00:00Z",
             "attachments": [{"filename": "c"}]}  # fmt: skip
    pipeline = dlt.pipeline(
        "two_versions",
        destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")),
        dataset_name="close",
        pipelines_dir=str(tmp_path / "dlt"),
    )

    def pages(*versions: dict) -> object:
        shaped = SHAPERS[shaper]
        return lambda: (item for version in versions for item in shaped([version], True))

    for order in ((older, newer), (newer, older)):  # either order, in separate pages
        pipeline.run(_emails_resource(pages(*order), "emails"))
        with pipeline.sql_client() as client:
            assert client.execute_sql("SELECT subject FROM emails") == [("new",)]
            assert client.execute_sql("SELECT filename FROM emails__attachments") == [("c",)]
    # an emptied list and then a deletion remove the child rows
    emptied = {**newer, "date_updated": "2024-01-03T00:00:00Z", "attachments": []}
    pipeline.run(_emails_resource(pages(emptied), "emails"))
    with pipeline.sql_client() as client:
        assert client.execute_sql("SELECT COUNT(*) FROM emails__attachments") == [(0,)]
    gone = deletion_items(["acti_1"], datetime(2024, 1, 4, tzinfo=UTC))
    pipeline.run(_emails_resource(lambda: iter(gone), "email_changes"))
    with pipeline.sql_client() as client:
        assert client.execute_sql("SELECT COUNT(*) FROM emails") == [(0,)]
        assert client.execute_sql("SELECT COUNT(*) FROM emails__recipients") == [(0,)]
        assert client.execute_sql("SELECT COUNT(*) FROM emails__attachments") == [(0,)]


def test_a_walk_into_an_empty_warehouse_shapes_no_marker_rows_for_empty_lists() -> None:
    emails = [
        {"id": "acti_1", "date_updated": "2024-01-02T00:00:00Z", "attachments": [{"filename": "a"}]},
        {"id": "acti_2", "date_updated": "2024-01-01T00:00:00Z", "opens": []},
    ]  # fmt: skip
    fresh = tables(finish(preshape(emails, True, stored=False)))
    usual = tables(finish(preshape(emails, True)))
    assert fresh["emails"] == usual["emails"]
    for table, rows in usual.items():
        if table == "emails":
            continue
        # the same stored rows, without the markers that would delete nothing
        assert fresh[table] == [r for r in rows if not r["_deleted"]], table
        assert any(r["_slot"] == -1 for r in rows), table
    assert [r["email_id"] for r in fresh["emails__attachments"]] == ["acti_1"]


def test_a_walk_batch_listed_once_and_a_later_version_in_the_same_load(tmp_path) -> None:  # noqa: ANN001
    """A walk's batches are remembered compactly (`_Listed`); the change scan joining the
    walk's last load, and deletions, still find the versions and list lengths they hold."""
    older = {"id": "acti_1", "subject": "old", "date_updated": "2024-01-01T00:00:00Z",
             "attachments": [{"filename": "a"}, {"filename": "b"}]}  # fmt: skip
    newer = {"id": "acti_1", "subject": "new", "date_updated": "2024-01-02T00:00:00Z",
             "attachments": [{"filename": "c"}]}  # fmt: skip
    other = {"id": "acti_2", "subject": "other", "date_updated": "2024-01-01T00:00:00Z"}

    def walked(email: dict) -> list:
        return finish(preshape([email, other], True, once=True))

    def changed(email: dict) -> list:
        return finish(preshape([email], True))

    loads = {  # a load's items in order -> (subjects, attachments) it leaves
        "walk older, change newer": (lambda: walked(older) + changed(newer), ["new", "other"], ["c"]),
        "walk newer, change older": (lambda: walked(newer) + changed(older), ["new", "other"], ["c"]),
        "walk newer, shape older": (lambda: walked(newer) + shape([older], True), ["new", "other"], ["c"]),
        "walk older, deleted": (
            lambda: walked(older) + deletion_items(["acti_1"], datetime(2024, 1, 4, tzinfo=UTC)),
            ["other"], [],
        ),
    }  # fmt: skip
    for number, (name, (items, subjects, files)) in enumerate(loads.items()):
        pipeline = dlt.pipeline(
            f"listed_{number}",
            destination=dlt.destinations.duckdb(str(tmp_path / f"{number}.duckdb")),
            dataset_name="close",
            pipelines_dir=str(tmp_path / "dlt"),
        )
        pipeline.run(_emails_resource(lambda items=items: iter(items()), "emails"))
        with pipeline.sql_client() as client:
            got = client.execute_sql("SELECT subject FROM emails ORDER BY subject")
            assert [r[0] for r in got] == subjects, name
            got = client.execute_sql("SELECT filename FROM emails__attachments ORDER BY 1")
            assert [r[0] for r in got] == files, name


def test_pages_shaped_one_by_one_combine_into_the_batch_shaped_at_once() -> None:
    pages = [
        [{"id": "acti_1", "date_updated": "2024-01-02T00:00:00Z", "new_flag": True,
          "attachments": [{"filename": "a"}], "envelope": {"from": [{"email": "a@x.com"}]}}],
        [{"id": "acti_2", "date_updated": "2024-01-01T00:00:00Z", "opens": []},
         {"id": "acti_3", "date_updated": "2024-01-01T00:00:00Z", "other_new": 3,
          "envelope": {"x_new": "v", "to": [{"email": "b@x.com"}]}}],
    ]  # fmt: skip
    at_once = tables(finish(preshape([e for page in pages for e in page], True)))
    one_by_one = tables(finish(combine([preshape(page, True) for page in pages])))
    assert one_by_one == at_once
    assert [r["new_flag"] for r in one_by_one["emails"]] == [True, None, None]
    assert [r["envelope__x_new"] for r in one_by_one["emails"]] == [None, None, "v"]


class _ListedTwice:
    """A walk in plain `_skip` paging whose third page lists an email of the first again."""

    finished = True

    class spans:  # noqa: N801
        unanchored = True

    def pages(self) -> object:
        old = {"date_updated": "2024-01-01T00:00:00Z"}
        yield Page([{"id": "acti_1", **old}, {"id": "acti_2", **old}], 0, (T0, T0))
        yield Page([{"id": "acti_3", **old}], 1, (T0, T0))
        yield Page([{"id": "acti_2", "date_updated": "2024-01-02T00:00:00Z"}], 0, (T0, T1))

    def close(self) -> None:
        pass


T0, T1 = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)


def test_a_batch_ends_before_an_email_listed_twice() -> None:
    """Each batch holds one version per email (its load's memory compares them)."""
    prefetch = Prefetch(_ListedTwice(), True, depth=4, batch_emails=10)  # type: ignore[arg-type]
    batches = list(prefetch.batches())
    assert [sorted(b.shaped.versions) for b in batches] == [
        ["acti_1", "acti_2", "acti_3"],
        ["acti_2"],
    ]
    assert [b.emails for b in batches] == [3, 1]
    assert [b.done for b in batches] == [{0: (T0, T0), 1: (T0, T0)}, {0: (T0, T1)}]
    assert not any(b.shaped.once for b in batches)  # plain paging: looked up, not trusted
    assert prefetch.finished
