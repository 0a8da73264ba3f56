"""Fixtures shared by all tests: a running Close emulator and a destination to load into."""

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from close_emulator import Emulator, EmulatorConfig, EmulatorServer

POSTGRES_DSN = os.environ.get(
    "CLOSE_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
)
# MariaDB / MySQL through dlt's sqlalchemy destination; a dataset is a database there
MARIADB_URL = os.environ.get("CLOSE_TEST_MARIADB", "mysql+pymysql://root:@127.0.0.1:3306")
TEST_API_KEY = "api_test_key_DO_NOT_LEAK_4f2c9e"


def postgres_unavailable_reason() -> str | None:
    """None when the test PostgreSQL answers, else why not."""
    try:
        import psycopg2

        psycopg2.connect(POSTGRES_DSN, connect_timeout=3).close()
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        return f"PostgreSQL at {POSTGRES_DSN.split('@')[-1]} is unreachable: {str(exc).strip()}"
    return None


def mariadb_unavailable_reason() -> str | None:
    """None when the test MariaDB answers, else why not."""
    try:
        import sqlalchemy

        sqlalchemy.create_engine(MARIADB_URL, connect_args={"connect_timeout": 3}).connect().close()
    except Exception as exc:  # any failure to connect (or no driver) means: no MariaDB here
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"MariaDB at {MARIADB_URL.split('@')[-1]} is unreachable: {first_line}"
    return None


_PG_REASON = postgres_unavailable_reason()
if _PG_REASON and os.environ.get("CI", "").lower() == "true":
    raise pytest.UsageError(f"CI=true needs PostgreSQL: {_PG_REASON}")
_MARIADB_REASON = mariadb_unavailable_reason()
if _MARIADB_REASON and os.environ.get("CI", "").lower() == "true":
    raise pytest.UsageError(f"CI=true needs MariaDB: {_MARIADB_REASON}")

DESTINATIONS = [
    "duckdb",
    pytest.param("postgres", marks=pytest.mark.skipif(bool(_PG_REASON), reason=_PG_REASON or "")),
]
# The integration suite (truth, updates, deletions, views) also runs on MariaDB through dlt's
# sqlalchemy destination; a module opts in with `from tests.destinations import every_destination`.
EVERY_DESTINATION = [
    *DESTINATIONS,
    pytest.param(
        "sqlalchemy",
        marks=pytest.mark.skipif(bool(_MARIADB_REASON), reason=_MARIADB_REASON or ""),
        id="mariadb",
    ),
]


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """Starts emulators (real HTTP on a free port) and stops them after the test."""
    servers: list[EmulatorServer] = []

    def start(emails: int = 300, seed: int = 1, **config: object) -> EmulatorServer:
        config.setdefault("rate", 0)
        emulator = Emulator(EmulatorConfig(**config))  # type: ignore[arg-type]
        emulator.generate(emails, seed)
        server = EmulatorServer(emulator)
        server.__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(params=DESTINATIONS)
def destination(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def sync_env(
    tmp_path: "os.PathLike[str]", monkeypatch: pytest.MonkeyPatch, destination: str
) -> Iterator[dict[str, str]]:
    """Environment for one pipeline: its own state folder, DuckDB file or Postgres dataset."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        "SOURCES__CLOSE__API_KEY": TEST_API_KEY,
        "DLT_DATA_DIR": str(tmp_path) + "/dlt",
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path) + "/warehouse.duckdb",
        "DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_DSN,
        "DESTINATION__SQLALCHEMY__CREDENTIALS": f"{MARIADB_URL}/mysql",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "DESTINATION": destination,
        "DATASET": "close" if destination == "duckdb" else f"close_{suffix}",
        "PIPELINE_NAME": f"close_test_{suffix}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    yield env
    if destination == "postgres":
        import psycopg2

        with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{env["DATASET"]}" CASCADE')
            cur.execute(f'DROP SCHEMA IF EXISTS "{env["DATASET"]}_staging" CASCADE')
    if destination == "sqlalchemy":
        import sqlalchemy

        with sqlalchemy.create_engine(MARIADB_URL).begin() as conn:
            for database in (env["DATASET"], f"{env['DATASET']}_staging"):
                conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS `{database}`"))


# `destination` for a test whose PostgreSQL case runs only under `make soak` (keeps CI within
# its 15 minutes on a slow 2-core machine): the path is the destination's common one, and
# `make test` checks it on DuckDB.
DUCKDB_AND_SOAK_POSTGRES = [
    "duckdb",
    pytest.param("postgres", marks=[*DESTINATIONS[1].marks, pytest.mark.soak]),
]
