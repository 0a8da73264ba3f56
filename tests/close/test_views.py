"""The analyst views and the example queries of docs/queries.md, on a hand-made dataset.

Every expected value below was worked out by hand from `make_dataset`, not by running the
views: the dataset is small on purpose. Both destinations run every test (the `destination`
fixture), and the views are read in a SQL session whose time zone is not UTC.
"""

import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from close_emulator import Emulator, EmulatorServer
from pipelines.runner import make_pipeline
from tests.conftest import EVERY_DESTINATION
from tests.destinations import every_destination  # noqa: F401

from .utils import assert_warehouse_equals, query, rows_of, sync

ROOT = Path(__file__).resolve().parents[2]
QUERIES_MD = ROOT / "docs" / "queries.md"
SESSION_TIME_ZONE = "America/Los_Angeles"  # UTC-7/-8: 02:00 UTC is the previous local day


def at(value: str) -> datetime:
    """`2024-03-04T10:00` as an aware UTC datetime."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


# Hand-made dataset. Users U1, U2 are the emulator's first two users; None is "no user".
#
# thread thr_main (U1): incoming before the first outgoing, an incoming at exactly the same
#   instant as the first outgoing (not a reply: replies are strictly after), then two
#   replies, plus a draft (no activity_at: ignored)
# thread thr_quiet (U2): outgoing only, across UTC midnight 2024-03-10/11, one errored
# thread thr_tie (no user): two incoming at the same instant; lead of the smaller id wins
# threads thr_fast / thr_slow (U2): replied after 2 h / 48 h, the latter across the start of
#   daylight saving time in the session's zone (2024-03-10 10:00 UTC): still 48 h, not 47
# thread thr_draft: only a draft -> no row
# acti_nothread: sent, no thread_id -> in daily activity and sequences, not in threads
MAIN, QUIET, TIE, FAST, SLOW = "thr_main", "thr_quiet", "thr_tie", "thr_fast", "thr_slow"


def add_email(
    emulator: Emulator,
    email_id: str,
    status: str,
    activity_at: datetime | None,
    user_id: str | None,
    thread_id: str | None,
    lead_id: str,
    to: tuple[str, ...] = ("rep@ourco.example",),
    cc: tuple[str, ...] = (),
    sender: str = "Rep <rep@ourco.example>",
    sequence_id: str | None = None,
    sequence_name: str | None = None,
    opens: tuple[datetime, ...] = (),
    has_reply: bool = False,
) -> dict[str, Any]:
    """One email with every field that matters set explicitly (no random defaults)."""
    created = activity_at or at("2024-03-01T12:00")
    return emulator.create_email(
        id=email_id,
        status=status,
        direction="incoming" if status == "inbox" else "outgoing",
        lead_id=lead_id,
        user_id=user_id,
        thread_id=thread_id,
        date_created=created,
        date_sent=activity_at if status in ("sent", "inbox") else None,
        activity_at=activity_at,
        subject=f"subject of {email_id}",
        sender=sender,
        to=list(to),
        cc=list(cc),
        bcc=[],
        envelope=None,
        attachments=[],
        send_attempts=[],
        opens=[
            {
                "opened_at": when.isoformat(),
                "opened_by": to[0],
                "ip_address": "66.1.2.3",
                "user_agent": "Mozilla/5.0",
            }
            for when in opens
        ],
        has_reply=has_reply,
        sequence_id=sequence_id,
        sequence_name=sequence_name,
        sequence_subscription_id=f"sub_{email_id}" if sequence_id else None,
        template_id=None,
        template_name=None,
        bulk_email_action_id=None,
    )


ALICE = "Alice <alice@acme.io>"
ONBOARDING = {"sequence_id": "seq_onboarding", "sequence_name": "Onboarding"}
WINBACK = {"sequence_id": "seq_winback", "sequence_name": "Winback"}
DEMO = {"sequence_id": "seq_demo", "sequence_name": "Demo follow-up"}
# fmt: off
DATASET: list[tuple[str, str, str | None, str | None, str | None, str, dict[str, Any]]] = [
    # id, status, activity_at (UTC), user, thread, lead, other fields
    ("acti_main_1", "inbox", "2024-03-04T08:00", "U1", MAIN, "lead_first", {"sender": ALICE}),
    ("acti_main_2", "sent", "2024-03-04T10:00", "U1", MAIN, "lead_main",
     {"to": ("alice@acme.io",), **ONBOARDING, "opens": ("2024-03-04T11:00",), "has_reply": True}),
    ("acti_main_3", "inbox", "2024-03-04T10:00", "U1", MAIN, "lead_main", {"sender": ALICE}),
    ("acti_main_4", "inbox", "2024-03-05T12:30", "U1", MAIN, "lead_main", {"sender": ALICE}),
    ("acti_main_5", "inbox", "2024-03-06T09:00", "U1", MAIN, "lead_main", {"sender": ALICE}),
    ("acti_main_draft", "draft", None, "U1", MAIN, "lead_main",
     {"to": ("alice@acme.io",), "sequence_id": "seq_nurture", "sequence_name": "Nurture"}),
    ("acti_nothread", "sent", "2024-03-04T15:00", "U1", None, "lead_main",
     {"to": ("bob@acme.io",), "sequence_id": "seq_onboarding"}),  # no sequence_name
    ("acti_quiet_1", "sent", "2024-03-10T23:30", "U2", QUIET, "lead_quiet",
     {"to": ("Carol@Globex.example",), **WINBACK}),
    ("acti_quiet_2", "error", "2024-03-11T00:30", "U2", QUIET, "lead_quiet",
     {"to": ("carol@globex.example",), **WINBACK, "opens": ("2024-03-11T05:00",),
      "has_reply": True}),
    ("acti_quiet_3", "sent", "2024-03-11T02:00", "U2", QUIET, "lead_quiet",
     {"to": ("carol@globex.example",), "cc": ("dave@initech.example",), **WINBACK,
      "opens": ("2024-03-11T04:00", "2024-03-11T06:00")}),
    ("acti_tie_b", "inbox", "2024-03-12T09:00", None, TIE, "lead_b",
     {"sender": "Bea <bea@b.example>"}),
    ("acti_tie_a", "inbox", "2024-03-12T09:00", None, TIE, "lead_a",
     {"sender": "Abe <abe@a.example>"}),
    ("acti_fast_out", "sent", "2024-03-13T09:00", "U2", FAST, "lead_fast",
     {"to": ("erin@acme.io",), **DEMO, "has_reply": True}),
    ("acti_fast_in", "inbox", "2024-03-13T11:00", "U2", FAST, "lead_fast",
     {"sender": "Erin <erin@acme.io>"}),
    ("acti_slow_out", "sent", "2024-03-09T20:00", "U2", SLOW, "lead_slow",
     {"to": ("frank@initech.example",), **DEMO, "opens": ("2024-03-09T21:00",),
      "has_reply": True}),
    ("acti_slow_in", "inbox", "2024-03-11T20:00", "U2", SLOW, "lead_slow",
     {"sender": "Frank <frank@initech.example>"}),
    ("acti_lonely_draft", "draft", None, "U2", "thr_draft", "lead_draft",
     {"to": ("gina@hooli.example",)}),
]
# fmt: on


def make_dataset(emulator: Emulator) -> tuple[str, str]:
    """Creates DATASET in the emulator; returns the ids of users U1 and U2."""
    users = {"U1": emulator.world.users[0]["id"], "U2": emulator.world.users[1]["id"], None: None}
    for email_id, status, activity, user, thread, lead, other in DATASET:
        other = dict(other)
        other["opens"] = tuple(at(when) for when in other.get("opens", ()))
        activity_at = at(activity) if activity else None
        add_email(emulator, email_id, status, activity_at, users[user], thread, lead, **other)
    return users["U1"], users["U2"]  # type: ignore[return-value]


def expected_threads() -> dict[str, dict[str, Any]]:
    names = ("lead_id", "message_count", "incoming_count", "outgoing_count",
             "first_activity_at", "last_activity_at", "first_outgoing_at", "first_reply_at",
             "replied", "time_to_first_reply")  # fmt: skip
    rows = {
        MAIN: ("lead_first", 5, 4, 1, at("2024-03-04T08:00"), at("2024-03-06T09:00"),
               at("2024-03-04T10:00"), at("2024-03-05T12:30"), True,
               timedelta(days=1, hours=2, minutes=30)),
        QUIET: ("lead_quiet", 3, 0, 3, at("2024-03-10T23:30"), at("2024-03-11T02:00"),
                at("2024-03-10T23:30"), None, False, None),
        TIE: ("lead_a", 2, 2, 0, at("2024-03-12T09:00"), at("2024-03-12T09:00"), None, None,
              False, None),
        FAST: ("lead_fast", 2, 1, 1, at("2024-03-13T09:00"), at("2024-03-13T11:00"),
               at("2024-03-13T09:00"), at("2024-03-13T11:00"), True, timedelta(hours=2)),
        SLOW: ("lead_slow", 2, 1, 1, at("2024-03-09T20:00"), at("2024-03-11T20:00"),
               at("2024-03-09T20:00"), at("2024-03-11T20:00"), True, timedelta(hours=48)),
    }  # fmt: skip
    return {thread: dict(zip(names, row, strict=True)) for thread, row in rows.items()}


def expected_daily(u1: str, u2: str) -> dict[tuple[str | None, date], tuple[int, ...]]:
    """(user_id, day) -> (sent, received, opened, replied)."""
    return {
        # main_2 (sent, opened, replied) + nothread (sent); main_1 and main_3 received
        (u1, date(2024, 3, 4)): (2, 2, 1, 1),
        (u1, date(2024, 3, 5)): (0, 1, 0, 0),
        (u1, date(2024, 3, 6)): (0, 1, 0, 0),
        (u2, date(2024, 3, 9)): (1, 0, 1, 1),  # slow_out
        (u2, date(2024, 3, 10)): (1, 0, 0, 0),  # quiet_1 at 23:30 UTC
        # quiet_3 sent and opened; quiet_2 errored: its open and reply do not count;
        # slow_in received
        (u2, date(2024, 3, 11)): (1, 1, 1, 0),
        (None, date(2024, 3, 12)): (0, 2, 0, 0),
        (u2, date(2024, 3, 13)): (1, 1, 0, 1),
    }


def expected_sequences() -> dict[str, tuple[Any, ...]]:
    """sequence_id -> (name, sent, opened, replied, open_rate, reply_rate)."""
    return {
        "seq_onboarding": ("Onboarding", 2, 1, 1, 0.5, 0.5),
        "seq_winback": ("Winback", 2, 1, 0, 0.5, 0.0),  # the errored one does not count
        "seq_nurture": ("Nurture", 0, 0, 0, None, None),  # a draft only: nothing sent
        "seq_demo": ("Demo follow-up", 2, 1, 2, 0.5, 1.0),
    }


# --------------------------------------------------------------------------- helpers


# destination -> (statement setting the session's time zone, query reading it back)
TIME_ZONE_SQL = {
    "postgres": ("SET TIME ZONE '{zone}'", "SELECT current_setting('TimeZone')"),
    "duckdb": ("SET TimeZone = '{zone}'", "SELECT current_setting('TimeZone')"),
    # MariaDB's named zones need its time zone tables loaded; an offset needs nothing
    "sqlalchemy": ("SET time_zone = '{zone}'", "SELECT @@session.time_zone"),
}
SESSION_OFFSET = "-08:00"  # on MariaDB: as far from UTC as SESSION_TIME_ZONE in winter


def session_queries(*sqls: str, time_zone: str = SESSION_TIME_ZONE) -> list[list[dict]]:
    """Runs `sqls` in one SQL session whose time zone is `time_zone`; `{ds}` is the dataset.

    Also checks that the session really is in that time zone."""
    destination = os.environ["DESTINATION"]
    pipeline = make_pipeline(os.environ["PIPELINE_NAME"], destination, os.environ["DATASET"])
    zone = SESSION_OFFSET if destination == "sqlalchemy" else time_zone
    set_zone, get_zone = TIME_ZONE_SQL[destination]
    results = []
    with pipeline.sql_client() as client:
        client.execute_sql(set_zone.format(zone=zone))
        assert client.execute_sql(get_zone)[0][0] == zone
        dataset = client.fully_qualified_dataset_name()
        for sql in sqls:
            with client.execute_query(sql.replace("{ds}", dataset)) as cur:
                results.append(rows_of(cur))
    return results


def contract_row(row: dict[str, Any]) -> dict[str, Any]:
    """A view row with the README's substitutes read back as the contract's types.

    MariaDB has no boolean and no interval: `replied` is 0 or 1 there and
    `time_to_first_reply` seconds as a double (checked here before they are converted)."""
    if os.environ["DESTINATION"] != "sqlalchemy":
        return row
    row = dict(row)
    if "replied" in row and "time_to_first_reply" in row:
        assert row["replied"] in (0, 1) and type(row["replied"]) is int, row
        row["replied"] = bool(row["replied"])
        seconds = row["time_to_first_reply"]
        assert seconds is None or type(seconds) is float, row
        row["time_to_first_reply"] = None if seconds is None else timedelta(seconds=seconds)
    return row


def column_types(view: str) -> dict[str, str]:
    """column -> data type of `view` in information_schema, lower case."""
    rows = query(
        "SELECT column_name, data_type FROM information_schema.columns"
        f" WHERE table_schema = '{os.environ['DATASET']}' AND table_name = '{view}'"
    )
    return {r["column_name"]: r["data_type"].lower() for r in rows}


TYPE_FAMILIES = {
    "bigint": "integer",
    "integer": "integer",
    "int": "integer",
    "double": "float",
    "double precision": "float",
    "date": "date",
    "boolean": "bool",
    "interval": "interval",
    "timestamp with time zone": "timestamptz",
    "varchar": "text",
    "character varying": "text",
    "text": "text",
}


# contract types of the analyst views, as families of DuckDB's and PostgreSQL's names
VIEW_TYPES = {
    "email_threads": {
        "thread_id": "text", "lead_id": "text", "message_count": "integer",
        "incoming_count": "integer", "outgoing_count": "integer",
        "first_activity_at": "timestamptz", "last_activity_at": "timestamptz",
        "first_outgoing_at": "timestamptz", "first_reply_at": "timestamptz",
        "replied": "bool", "time_to_first_reply": "interval",
    },
    "email_daily_activity": {
        "user_id": "text", "day": "date", "sent": "integer", "received": "integer",
        "opened": "integer", "replied": "integer",
    },
    "email_sequence_performance": {
        "sequence_id": "text", "sequence_name": "text", "emails_sent": "integer",
        "emails_opened": "integer", "emails_replied": "integer", "open_rate": "float",
        "reply_rate": "float",
    },
}  # fmt: skip


# the README's substitutes on MariaDB: UTC DATETIMEs, 0/1 integers, seconds
MARIADB_TYPES = {"timestamptz": "datetime", "bool": "integer", "interval": "float"}
MARIADB_FAMILIES = {"datetime": "datetime", "longtext": "text", "mediumtext": "text"}


def assert_view_types(view: str) -> None:
    """The view's columns have the contract's types (as information_schema names them)."""
    types = column_types(view)
    expected = VIEW_TYPES[view]
    families = TYPE_FAMILIES
    if os.environ["DESTINATION"] == "sqlalchemy":
        expected = {name: MARIADB_TYPES.get(t, t) for name, t in expected.items()}
        families = {**TYPE_FAMILIES, **MARIADB_FAMILIES}
    got = {name: families.get(types.get(name, "?"), types.get(name)) for name in types}
    assert got == expected, view


@pytest.fixture
def close(make_emulator, sync_env, monkeypatch) -> EmulatorServer:  # noqa: ANN001
    return make_emulator(emails=0)


@pytest.fixture
def loaded(close: EmulatorServer) -> tuple[str, str]:
    users = make_dataset(close.emulator)
    sync(close.base_url)
    return users


# ----------------------------------------------------------------------------- views


def test_email_threads(loaded: tuple[str, str]) -> None:
    (rows,) = session_queries("SELECT * FROM {ds}.email_threads")
    rows = [contract_row(row) for row in rows]
    by_thread = {r["thread_id"]: r for r in rows}
    assert len(rows) == len(by_thread)
    expected = expected_threads()
    assert set(by_thread) == set(expected)  # no thr_draft (drafts only), no null thread
    for thread, columns in expected.items():
        got = {name: by_thread[thread][name] for name in columns}
        assert got == columns, thread
    replied = by_thread[MAIN]
    assert type(replied["replied"]) is bool
    assert isinstance(replied["time_to_first_reply"], timedelta)
    assert isinstance(replied["message_count"], int)
    assert replied["first_reply_at"].utcoffset() is not None
    assert_view_types("email_threads")


def test_email_daily_activity_uses_utc_days(loaded: tuple[str, str]) -> None:
    u1, u2 = loaded
    (rows,) = session_queries("SELECT * FROM {ds}.email_daily_activity")
    got = {
        (r["user_id"], r["day"]): (r["sent"], r["received"], r["opened"], r["replied"])
        for r in rows
    }
    assert len(got) == len(rows)
    assert got == expected_daily(u1, u2)  # no NULL day: drafts are left out
    for row in rows:
        assert type(row["day"]) is date
        assert all(type(row[n]) is int for n in ("sent", "received", "opened", "replied"))
    assert_view_types("email_daily_activity")


def test_email_sequence_performance(loaded: tuple[str, str]) -> None:
    (rows,) = session_queries("SELECT * FROM {ds}.email_sequence_performance")
    got = {
        r["sequence_id"]: (
            r["sequence_name"],
            r["emails_sent"],
            r["emails_opened"],
            r["emails_replied"],
            r["open_rate"],
            r["reply_rate"],
        )
        for r in rows
    }
    assert len(got) == len(rows)
    assert got == expected_sequences()
    for row in rows:
        assert all(type(row[n]) is int for n in ("emails_sent", "emails_opened", "emails_replied"))
        if row["emails_sent"]:
            assert type(row["open_rate"]) is float and type(row["reply_rate"]) is float
    assert_view_types("email_sequence_performance")


def test_views_follow_changes(close: EmulatorServer, loaded: tuple[str, str]) -> None:
    """A reply and an open arriving later reach the views on the next sync."""
    emulator = close.emulator
    reply = emulator.receive_reply("acti_quiet_1")
    emulator.record_open("acti_quiet_1")
    sync(close.base_url)
    (threads, sequences) = session_queries(
        "SELECT * FROM {ds}.email_threads WHERE thread_id = 'thr_quiet'",
        "SELECT * FROM {ds}.email_sequence_performance WHERE sequence_id = 'seq_winback'",
    )
    threads = [contract_row(row) for row in threads]
    reply_at = datetime.fromisoformat(reply["activity_at"])
    assert threads[0]["replied"] is True
    assert threads[0]["first_reply_at"] == reply_at
    assert threads[0]["time_to_first_reply"] == reply_at - at("2024-03-10T23:30")
    assert threads[0]["incoming_count"] == 1 and threads[0]["message_count"] == 4
    seq = sequences[0]
    assert (seq["emails_sent"], seq["emails_opened"], seq["emails_replied"]) == (2, 2, 1)
    assert (seq["open_rate"], seq["reply_rate"]) == (1.0, 0.5)


# ------------------------------------------------------------------ docs/queries.md


REPLY_RATE_BY_WEEK = "Reply rate by user and week"
QUIET_THREADS = "Threads that went quiet"
TIME_TO_REPLY = "Time to first reply"
SEQUENCE_LEADERBOARD = "Sequence leaderboard"
RECIPIENT_DOMAINS = "Top recipient domains"
EXPECTED_TITLES = (
    REPLY_RATE_BY_WEEK,
    QUIET_THREADS,
    TIME_TO_REPLY,
    SEQUENCE_LEADERBOARD,
    RECIPIENT_DOMAINS,
)


def doc_queries() -> dict[str, str]:
    """`### title` -> the ```sql block under it, from docs/queries.md."""
    text = QUERIES_MD.read_text()
    found = re.findall(r"^### (.+?)\n.*?```sql\n(.*?)```", text, flags=re.S | re.M)
    return {title.strip(): sql.strip().rstrip(";") for title, sql in found}


def on_dataset(sql: str) -> str:
    """The query with its `close.` schema prefix pointing at the test's dataset."""
    return re.sub(r"(?<![\w.'@])close\.(?=[a-z_])", "{ds}.", sql)


def test_docs_queries_have_titles_and_sql() -> None:
    queries = doc_queries()
    assert 4 <= len(queries) <= 6, list(queries)
    text = QUERIES_MD.read_text()
    assert text.count("```sql") == len(queries)
    for title, sql in queries.items():
        assert "close." in sql, title
        assert "{ds}" in on_dataset(sql) and "close." not in on_dataset(sql), title


# docs/queries.md is PostgreSQL and DuckDB SQL (PERCENTILE_CONT ... WITHIN GROUP, intervals),
# as the README says; the views themselves are checked on every live destination above
SQL_OF_THE_DOCS = [d for d in EVERY_DESTINATION if getattr(d, "values", (d,))[0] != "sqlalchemy"]


@pytest.mark.parametrize("destination", SQL_OF_THE_DOCS, indirect=True)
def test_docs_queries_give_the_known_answers(close: EmulatorServer) -> None:
    emulator = close.emulator
    u1, u2 = make_dataset(emulator)
    # a thread that is still young: outgoing two days ago, no reply yet (not "quiet")
    recent = emulator.clock.now().replace(microsecond=0) - timedelta(days=2)
    add_email(emulator, "acti_recent", "sent", recent, u1, "thr_recent", "lead_recent",
              to=("zed@ACME.io",))  # fmt: skip
    sync(close.base_url)
    queries = doc_queries()
    titles = list(queries)
    results = dict(
        zip(titles, session_queries(*(on_dataset(queries[t]) for t in titles)), strict=True)
    )
    assert set(results) == set(EXPECTED_TITLES), list(results)

    recent_week = recent.date() - timedelta(days=recent.weekday())
    weekly = [tuple(r.values()) for r in results[REPLY_RATE_BY_WEEK]]
    assert sorted(weekly, key=repr) == sorted(
        [
            (u1, date(2024, 3, 4), 2, 1, 0.5),  # 10th is a Sunday: same week as the 4th
            (u2, date(2024, 3, 4), 2, 1, 0.5),  # slow_out (9th), quiet_1 (10th)
            (u2, date(2024, 3, 11), 2, 1, 0.5),  # quiet_3, fast_out
            (u1, recent_week, 1, 0, 0.0),
        ],
        key=repr,
    )

    quiet = [tuple(r.values()) for r in results[QUIET_THREADS]]
    assert quiet == [(QUIET, "lead_quiet", at("2024-03-10T23:30"), at("2024-03-11T02:00"))]

    (ttfr,) = [tuple(r.values()) for r in results[TIME_TO_REPLY]]
    # replied threads: 2 h, 26.5 h, 48 h; p90 = 26.5 + 0.8 * (48 - 26.5)
    assert ttfr == (3, pytest.approx(76.5 / 3), pytest.approx(26.5), pytest.approx(43.7))

    leaderboard = [tuple(r.values()) for r in results[SEQUENCE_LEADERBOARD]]
    assert leaderboard == [
        ("Demo follow-up", 2, 1, 2, 50.0, 100.0),
        ("Onboarding", 2, 1, 1, 50.0, 50.0),
        ("Winback", 2, 1, 0, 50.0, 0.0),
    ]

    domains = [tuple(r.values()) for r in results[RECIPIENT_DOMAINS]]
    assert domains == [("acme.io", 4), ("globex.example", 2), ("initech.example", 2)]


# ------------------------------------------------------------------- without bodies

BODY_COLUMNS = ("body_text", "body_html", "body_preview", "body_text_quoted", "body_html_quoted")
LIST_PATHS = ("/activity/email/", "/activity/")


@pytest.mark.parametrize("form", ["--no-bodies", "SOURCES__CLOSE__INCLUDE_BODIES=false"])
def test_sync_without_bodies(form: str, make_emulator, sync_env, monkeypatch) -> None:  # noqa: ANN001
    close = make_emulator(emails=80, seed=9)
    emulator = close.emulator
    args: tuple[str, ...] = ()
    if form.startswith("--"):
        args = (form,)
    else:
        name, value = form.split("=")
        monkeypatch.setenv(name, value)
    sync(close.base_url, *args)
    # changes reach the warehouse through the event log and a re-fetch by id
    emails = emulator.all_emails()
    sent = [e for e in emails if e["status"] == "sent"]
    emulator.update_email(sent[0]["id"], body_text="a new body", subject="edited")
    emulator.record_open(sent[1]["id"])
    emulator.receive_reply(sent[2]["id"])
    emulator.add_late_email(40, lead_id=sent[3]["lead_id"])
    sync(close.base_url, *args)

    emails = emulator.all_emails()
    assert all(e["body_text"] and e["body_html"] for e in emails if e["status"] != "draft")
    assert_warehouse_equals(emails, include_bodies=False)
    not_null = " OR ".join(f"{c} IS NOT NULL" for c in BODY_COLUMNS)
    assert query(f"SELECT COUNT(*) AS n FROM {{ds}}.emails WHERE {not_null}")[0]["n"] == 0
    edited = query("SELECT subject FROM {{ds}}.emails WHERE id = '{}'".format(sent[0]["id"]))
    assert edited == [{"subject": "edited"}]

    lists = [e for e in emulator.request_log if e.path.endswith(LIST_PATHS)]
    assert any("id__in" in e.query for e in lists)  # re-fetches by id
    assert any("date_created__gte" in e.query for e in lists)  # the walk
    for entry in lists:
        assert "_fields" in entry.query, (entry.path, entry.query)
        fields = set(entry.query["_fields"].split(","))
        assert not fields & set(BODY_COLUMNS), (entry.path, fields & set(BODY_COLUMNS))
