"""Property-based: Close-shaped emails with arbitrary unicode, huge bodies, nulls and empty
lists survive shaping (sources/close/rows.py) and a real load on DuckDB and PostgreSQL.

Example counts are kept small (`make test` time); `make soak` runs many more.
"""

import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from close_emulator import Emulator, EmulatorConfig, EmulatorServer
from sources.close.rows import shape
from tests.conftest import DUCKDB_AND_SOAK_POSTGRES, POSTGRES_DSN

from .common import assert_exact

QUICK = settings(max_examples=25, deadline=None, derandomize=True)
LOADS = settings(
    max_examples=int(os.environ.get("CLOSE_PROPERTY_LOADS", "3")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate],  # a load per example: shrinking would take minutes
)
# text without surrogates (JSON cannot carry lone ones) and without NUL (PostgreSQL text
# cannot store it; Close's JSON does not send it either); "" drawn often, as it must load as
# "" and not as NULL (dlt's csv COPY into PostgreSQL once made it NULL)
TEXT = st.one_of(
    st.just(""),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40),
)
HUGE = st.integers(200_000, 1_500_000).map(lambda n: ("ünïcødé 📨 " * (n // 11 + 1))[:n])
BODY = st.one_of(st.none(), TEXT, HUGE)
ADDRESS = st.builds(
    lambda user, name: f"{user}@example.com", st.from_regex(r"[a-z]{1,8}", fullmatch=True), TEXT
)
MOMENT = st.datetimes(min_value=datetime(2010, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)


def stamp(moment: datetime, style: int) -> str:
    """One of the ways Close writes a timestamp: offset, `Z`, naive with µs, naive."""
    aware = moment.replace(tzinfo=UTC)
    return [aware.isoformat(), aware.isoformat().replace("+00:00", "Z"),
            moment.isoformat(timespec="microseconds"), moment.isoformat()][style]  # fmt: skip


@st.composite
def close_email(draw: st.DrawFn) -> dict[str, Any]:
    """A Close Email activity's fields as a page carries them (the parts the sync reads)."""
    created = draw(MOMENT)
    style = draw(st.integers(0, 3))
    return {
        "id": "acti_" + uuid.UUID(int=draw(st.integers(0, 2**64))).hex[:22],
        "subject": draw(st.one_of(st.none(), TEXT)),
        "body_text": draw(BODY),
        "body_html": draw(BODY),
        "direction": draw(st.sampled_from(["incoming", "outgoing"])),
        "status": draw(st.sampled_from(["sent", "inbox", "draft"])),
        "date_created": stamp(created, style),
        "date_updated": stamp(created + timedelta(seconds=draw(st.integers(0, 10**6))), style),
        "to": draw(st.lists(ADDRESS, max_size=3)),
        "cc": draw(st.lists(ADDRESS, max_size=2)),
        "bcc": [],
        "attachments": draw(st.lists(st.fixed_dictionaries({
            "filename": TEXT, "content_type": st.sampled_from(["image/png", "application/pdf"]),
            "size": st.integers(0, 2**40), "url": st.none() | TEXT,
            "content_id": st.none() | TEXT, "inline_only": st.booleans(),
        }), max_size=3)),
        "opens": [],
        "message_ids": draw(st.lists(TEXT, max_size=2)),
        "references": draw(st.one_of(st.just([]), st.lists(TEXT, max_size=3))),
        "envelope": draw(st.one_of(st.none(), st.fixed_dictionaries({
            "subject": TEXT, "message_id": st.none() | TEXT,
            "from": st.lists(st.fixed_dictionaries({"email": ADDRESS, "name": TEXT}), max_size=2),
            "to": st.lists(st.fixed_dictionaries({"email": ADDRESS, "name": TEXT}), max_size=3),
        }))),
        "body_text_quoted": draw(st.one_of(st.none(), st.just([]))),
        "body_html_quoted": draw(st.one_of(st.none(), st.fixed_dictionaries({"html": TEXT}))),
    }  # fmt: skip


def tables_of(items: list[Any]) -> dict[str, Any]:
    return {str(item.meta.hints["table_name"]): item.data for item in items}


@QUICK
@given(st.lists(close_email(), min_size=1, max_size=6, unique_by=lambda e: e["id"]))
def test_shaping_keeps_every_value(emails: list[dict[str, Any]]) -> None:
    tables = tables_of(shape(emails, include_bodies=True))
    root = tables["emails"].to_pylist()
    assert [r["id"] for r in root] == [e["id"] for e in emails]
    for email, stored in zip(emails, root, strict=True):
        for key in ("subject", "body_text", "body_html"):
            assert stored[key] == email[key], key
        created = datetime.fromisoformat(email["date_created"].replace("Z", "+00:00"))
        assert stored["date_created"] == (
            created if created.tzinfo else created.replace(tzinfo=UTC)
        )
    attachments = [r for r in tables["emails__attachments"].to_pylist() if r["_slot"] >= 0]
    assert len(attachments) == sum(len(e["attachments"]) for e in emails)
    message_ids = [r for r in tables["emails__message_ids"].to_pylist() if r["_slot"] >= 0]
    assert len(message_ids) == sum(len(e["message_ids"]) + len(e["references"]) for e in emails)
    without = tables_of(shape(emails, include_bodies=False))["emails"].to_pylist()
    assert all(r["body_text"] is None and r["body_html"] is None for r in without)


@pytest.mark.parametrize("destination", DUCKDB_AND_SOAK_POSTGRES, indirect=True)
@LOADS
@given(st.lists(close_email(), min_size=1, max_size=5, unique_by=lambda e: e["id"]))
def test_generated_emails_load_exactly(destination: str, tmp_path_factory, emails) -> None:  # noqa: ANN001
    """Each example: a fresh emulator serving these emails and a fresh pipeline, one sync."""
    from tests.close.utils import run_cli

    emulator = Emulator(EmulatorConfig(rate=0))
    emulator.generate(1, 1)
    lead = emulator.all_emails()[0]["lead_id"]
    for email in emails:
        fields = {k: v for k, v in email.items() if k not in ("id",)}
        emulator.create_email(lead_id=lead, **fields)
    folder = tmp_path_factory.mktemp("prop")
    suffix = uuid.uuid4().hex[:8]
    env = {"SOURCES__CLOSE__API_KEY": "api_prop", "DLT_DATA_DIR": f"{folder}/dlt",
           "DESTINATION__DUCKDB__CREDENTIALS": f"{folder}/w.duckdb",
           "DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_DSN, "DESTINATION": destination,
           "DATASET": f"prop_{suffix}", "PIPELINE_NAME": f"prop_{suffix}",
           "RUNTIME__DLTHUB_TELEMETRY": "false"}  # fmt: skip
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with EmulatorServer(emulator) as close:
            code, _out, err = run_cli("sync", base_url=close.base_url)
            assert code == 0, err[-3000:]
            assert_exact(close)  # "" stays "" and NULL stays NULL, on both destinations
    finally:
        if destination == "postgres":
            _drop_schema(env["DATASET"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        emulator.close()


def _drop_schema(dataset: str) -> None:
    import psycopg2

    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        for name in (dataset, f"{dataset}_staging"):
            cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(autouse=True)
def _no_base_url_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_cli sets SOURCES__CLOSE__BASE_URL in os.environ; undo it after each test."""
    monkeypatch.delenv("SOURCES__CLOSE__BASE_URL", raising=False)
