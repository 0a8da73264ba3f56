"""PostgreSQL and MariaDB specifics: contract types in information_schema, keys, comments,
indexes; and the same tables and views, with the same columns and compatible types (or the
README's substitutes), on DuckDB, PostgreSQL and MariaDB."""

import os
import uuid

import pytest

from close_emulator import EmulatorServer
from sources.close.columns import EMAIL_COLUMNS
from tests.conftest import EVERY_DESTINATION
from warehouse import ANALYST_VIEWS, EMAILS_DESCRIPTION

from .test_docs import CONTRACT_COLUMNS, CONTRACT_TYPES
from .utils import query, sync


def destinations(*names: str) -> list:  # type: ignore[type-arg]
    """The conftest's destination parameters (with their skip marks) named `names`."""
    return [p for p in EVERY_DESTINATION if getattr(p, "values", (p,))[0] in names]


POSTGRES_ONLY = destinations("postgres")

# information_schema data types, DuckDB's and PostgreSQL's, as one family each
TYPE_FAMILIES = {
    "varchar": "text",
    "character varying": "text",
    "text": "text",
    "bigint": "bigint",
    "boolean": "boolean",
    "double": "double",
    "double precision": "double",
    "date": "date",
    "interval": "interval",
    "timestamp with time zone": "timestamptz",
    "json": "json",
    "jsonb": "json",
}
# MariaDB's, with the README's substitutes: UTC DATETIMEs, TINYINT booleans, seconds for
# intervals; json is LONGTEXT there, as are long texts, so both count as text
MARIADB_TYPE_FAMILIES = {
    "varchar": "text",
    "text": "text",
    "longtext": "text",
    "mediumtext": "text",
    "bigint": "bigint",
    "int": "bigint",
    "tinyint": "boolean",
    "double": "double",
    "date": "date",
    "datetime": "timestamptz",
}
SUBSTITUTED = {
    ("email_threads", "replied"): "bigint",
    ("email_threads", "time_to_first_reply"): "double",
}


@pytest.fixture(params=["generated", "sparse"])
def close(request, make_emulator, sync_env, monkeypatch) -> EmulatorServer:  # noqa: ANN001
    """150 generated emails, or a single one without envelope, attachments, opens or send
    attempts: most child tables then do not exist, and their views are typed stand-ins."""
    if request.param == "generated":
        return make_emulator(emails=150, seed=5)
    server = make_emulator(emails=0)
    server.emulator.create_email(
        lead_id="lead_sparse",
        status="inbox",
        date_created="2024-05-01T10:00:00+00:00",
        envelope=None,
        attachments=[],
        opens=[],
        send_attempts=[],
        message_ids=[],
        references=[],
    )
    return server


def schema_columns() -> dict[str, dict[str, str]]:
    """table or view -> column -> information_schema data type (lower case), contract ones."""
    rows = query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        f" WHERE table_schema = '{os.environ['DATASET']}'"
    )
    found: dict[str, dict[str, str]] = {}
    for row in rows:
        if row["table_name"] in CONTRACT_COLUMNS:
            found.setdefault(row["table_name"], {})[row["column_name"]] = row["data_type"].lower()
    return found


@pytest.mark.parametrize("destination", POSTGRES_ONLY, indirect=True)
def test_contract_types_comments_and_indexes(close: EmulatorServer) -> None:
    sync(close.base_url)
    emulator = close.emulator
    sent = next((e for e in emulator.all_emails() if e["status"] == "sent"), None)
    if sent:
        emulator.record_open(sent["id"])
        emulator.receive_reply(sent["id"])
    sync(close.base_url)

    columns = schema_columns()
    for table, names in CONTRACT_COLUMNS.items():
        assert set(names) <= set(columns.get(table, {})), (table, set(names) - set(columns[table]))
    for (table, column), sql_type in CONTRACT_TYPES.items():
        assert columns[table][column] == sql_type, (table, column)
    for table, types in columns.items():  # every timestamp anywhere keeps its time zone
        assert "timestamp without time zone" not in types.values(), table

    ids = query("SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d FROM {ds}.emails")[0]
    assert ids["n"] == ids["d"] == len(emulator.all_emails())

    dataset = os.environ["DATASET"]
    primary_key = query(
        "SELECT a.attname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid"
        f" AND a.attnum = ANY(c.conkey) WHERE c.contype = 'p'"
        f" AND c.conrelid = '\"{dataset}\".emails'::regclass"
    )
    assert primary_key == [{"attname": "id"}]

    def comment(relation: str, column: str) -> str | None:
        return query(
            f"SELECT col_description('\"{dataset}\".{relation}'::regclass, a.attnum) AS c"
            f" FROM pg_attribute a WHERE a.attrelid = '\"{dataset}\".{relation}'::regclass"
            f" AND a.attname = '{column}'"
        )[0]["c"]

    assert (
        comment("email_threads", "time_to_first_reply")
        == (ANALYST_VIEWS["email_threads"][2]["time_to_first_reply"][1])
    )
    assert comment("emails", "activity_at") == EMAIL_COLUMNS["activity_at"][1]
    assert comment("email_recipients", "role")

    indexes = query(
        f"SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = '{dataset}'"
        " AND tablename LIKE 'emails\\_\\_%'"
    )
    indexed = {r["tablename"] for r in indexes if r["indexdef"].endswith("(email_id)")}
    assert "emails__recipients" in indexed  # the sparse email has a sender and a `to`
    nested = {
        r["table_name"]
        for r in query(
            "SELECT table_name FROM information_schema.tables"
            f" WHERE table_schema = '{dataset}' AND table_name LIKE 'emails\\_\\_%'"
        )
    }
    assert nested <= indexed, nested - indexed


@pytest.mark.parametrize("destination", destinations("postgres", "sqlalchemy"), indirect=True)
def test_every_destination_has_the_same_columns_as_duckdb(
    close: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    destination: str,
) -> None:
    sync(close.base_url)
    on_server = schema_columns()

    monkeypatch.setenv("DESTINATION", "duckdb")
    monkeypatch.setenv("DATASET", "close")
    monkeypatch.setenv("PIPELINE_NAME", f"close_test_{uuid.uuid4().hex[:8]}")
    sync(close.base_url)
    on_duckdb = schema_columns()

    assert set(on_server) == set(on_duckdb) == set(CONTRACT_COLUMNS)
    mariadb = destination == "sqlalchemy"
    for table in CONTRACT_COLUMNS:
        server, duck = on_server[table], on_duckdb[table]
        assert set(server) == set(duck), (table, set(server) ^ set(duck))
        families = {}
        for column in server:
            expected = TYPE_FAMILIES.get(duck[column], duck[column])
            if mariadb:
                got = MARIADB_TYPE_FAMILIES.get(server[column], server[column])
                expected = SUBSTITUTED.get((table, column), expected)
                expected = "text" if expected == "json" else expected
            else:
                got = TYPE_FAMILIES.get(server[column], server[column])
            families[column] = (got, expected)
        different = {column: pair for column, pair in families.items() if pair[0] != pair[1]}
        assert not different, (table, different)


@pytest.mark.parametrize("destination", destinations("sqlalchemy"), indirect=True)
def test_mariadb_keys_and_indexes(close: EmulatorServer) -> None:
    sync(close.base_url)
    sync(close.base_url)  # a second refresh finds its indexes there and keeps them
    indexes = query(
        "SELECT table_name, index_name, column_name, non_unique, sub_part"
        " FROM information_schema.statistics"
        f" WHERE table_schema = '{os.environ['DATASET']}'"
    )
    by_table = {(r["table_name"], r["column_name"]): r for r in indexes}
    key = by_table[("emails", "id")]
    assert (key["non_unique"], key["sub_part"]) == (0, 64)
    tables = {
        r["table_name"]
        for r in query(
            "SELECT table_name FROM information_schema.tables"
            f" WHERE table_schema = '{os.environ['DATASET']}' AND table_name LIKE 'emails\\_\\_%'"
        )
    }
    assert "emails__recipients" in tables
    assert {t for t in tables if (t, "email_id") in by_table} == tables
    comment = query(
        "SELECT table_comment FROM information_schema.tables"
        f" WHERE table_schema = '{os.environ['DATASET']}' AND table_name = 'emails'"
    )
    assert comment == [{"table_comment": EMAILS_DESCRIPTION}]
    # dlt's staging tables, kept between loads, are indexed on their merge keys
    staged = query(
        "SELECT table_name, column_name FROM information_schema.statistics"
        f" WHERE table_schema = '{os.environ['DATASET']}_staging'"
    )
    assert ("emails", "id") in {(r["table_name"], r["column_name"]) for r in staged}
