"""The run lock: one `sync` or `backfill` of a pipeline and dataset at a time.

Two overlapping runs could load an older view of an email last. The lock lives where the
data lives, so that it holds for every machine that loads into it:

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a dedicated
  connection, keyed by pipeline and dataset. The holder's run id, host and pid travel in
  the connection's `application_name`, so a refused run reads them from `pg_stat_activity`
  (and `backend_start` says since when). A holder that dies loses its session, and with it
  the lock.
- MySQL / MariaDB (dlt's `sqlalchemy` destination): a named lock (`GET_LOCK`) on a
  dedicated connection, which the server also drops with a dead holder's session. Named
  locks carry no text, so a refused run names the holder by its connection: the client
  host and the connection id (`information_schema.PROCESSLIST`).
- DuckDB (one file, one host) and every other destination: an `fcntl` lock on a file, which
  the kernel releases when the holder dies; the holder writes its run id, host, pid and
  start time into it. For DuckDB the file lies beside the database (`<file>.lock`), for
  other destinations in the pipeline's working folder, which protects one host only.
"""

import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import dlt


class RunLocked(Exception):
    """Another run holds the lock; the message names it (one line)."""


@dataclass
class Holder:
    """Who holds (or asks for) the lock."""

    run_id: str
    host: str
    pid: int
    since: str = ""

    def describe(self) -> str:
        if not self.pid:  # known only by its database session (MySQL / MariaDB)
            return f"{self.run_id} from {self.host}"
        return f"run {self.run_id} on {self.host} (pid {self.pid}) since {self.since or '?'}"


class Lock(Protocol):
    def try_acquire(self) -> bool: ...
    def holder(self) -> Holder | None: ...
    def release(self) -> None: ...


def acquire(
    lock: Lock,
    wait_s: float = 0.0,
    what: str = "",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 1.0,
) -> None:
    """Takes `lock`, waiting up to `wait_s` seconds for its holder; raises `RunLocked`."""
    deadline = clock() + wait_s
    while not lock.try_acquire():
        if clock() >= deadline:
            holder = lock.holder()
            named = holder.describe() if holder else "another run"
            waited = f" after waiting {wait_s:g} s" if wait_s else ""
            raise RunLocked(
                f"{what or 'this pipeline'} is locked by {named}{waited}; let it finish,"
                " or pass --wait SECONDS to wait for it"
            )
        sleep(min(poll_s, max(0.0, deadline - clock())))


def lock_for(pipeline: dlt.Pipeline, me: Holder) -> Lock:
    """The lock of this pipeline and dataset on its destination (see the module doc)."""
    name = pipeline.destination.destination_name
    credentials: Any = pipeline.destination_client().config.credentials
    key = f"close_emails:{pipeline.pipeline_name}:{pipeline.dataset_name}"
    if name == "postgres":
        return PostgresAdvisoryLock(credentials.to_native_representation(), key, me)
    if name == "sqlalchemy" and _is_mysql(credentials):
        return MySqlNamedLock(credentials.to_native_representation(), key, me)
    if name == "duckdb":
        # one file per pipeline and dataset: the organizations' pipelines share one DuckDB file
        database = Path(str(credentials.database))
        suffix = f"{pipeline.pipeline_name}.{pipeline.dataset_name}.lock"
        return FileLock(database.with_name(f"{database.name}.{suffix}"), me)
    return FileLock(Path(pipeline.working_dir) / "run.lock", me)


def _is_mysql(credentials: Any) -> bool:
    return str(getattr(credentials, "drivername", "")).split("+")[0] in ("mysql", "mariadb")


class MySqlNamedLock:
    """A MySQL/MariaDB named lock, held on a connection of its own for the whole run."""

    def __init__(self, url: str, key: str, me: Holder) -> None:
        self.url, self.me = url, me
        # lock names are at most 64 characters
        self.name = "close-sync:" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
        self._conn: Any = None

    def _connect(self) -> Any:
        import sqlalchemy as sa  # the sqlalchemy extra of dlt

        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        return engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _scalar(self, conn: Any, sql: str, **params: Any) -> Any:
        import sqlalchemy as sa

        return conn.execute(sa.text(sql), params).scalar()

    def try_acquire(self) -> bool:
        conn = self._connect()
        if self._scalar(conn, "SELECT GET_LOCK(:name, 0)", name=self.name) != 1:
            conn.close()
            return False
        self._conn = conn
        return True

    def holder(self) -> Holder | None:
        conn = self._connect()
        try:
            holder_id = self._scalar(conn, "SELECT IS_USED_LOCK(:name)", name=self.name)
            if holder_id is None:
                return None
            host = self._scalar(
                conn, "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = :id", id=holder_id
            )
        finally:
            conn.close()
        return Holder(f"the session of MySQL/MariaDB connection {holder_id}", str(host or "?"), 0)

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ending the session releases the lock
            self._conn = None


class FileLock:
    """An exclusive `flock` on a file; the kernel drops it when the holding process dies."""

    def __init__(self, path: Path, me: Holder) -> None:
        self.path, self.me = path, me
        self._file: IO[str] | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for as long as the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        since = self.me.since or datetime.now(UTC).isoformat(timespec="seconds")
        json.dump({**self.me.__dict__, "since": since}, handle)
        handle.flush()
        self._file = handle
        return True

    def holder(self) -> Holder | None:
        try:
            return Holder(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return None  # written a moment later, or by something else

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None


class PostgresAdvisoryLock:
    """A session-level advisory lock, held on a connection of its own for the whole run."""

    def __init__(self, dsn: str, key: str, me: Holder) -> None:
        self.dsn, self.me = dsn, me
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        self.key = int.from_bytes(digest, "big", signed=True)
        self._conn: Any = None

    def _connect(self, application_name: str) -> Any:
        import psycopg2  # the postgres extra of dlt

        conn = psycopg2.connect(self.dsn, application_name=application_name, connect_timeout=10)
        conn.autocommit = True
        return conn

    def try_acquire(self) -> bool:
        # the holder's identity rides on the session (at most 63 bytes in PostgreSQL)
        tag = f"close-sync {self.me.run_id} {self.me.pid} {self.me.host}"[:63]
        conn = self._connect(tag)
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
            taken = bool(cursor.fetchone()[0])
        if not taken:
            conn.close()
            return False
        self._conn = conn
        return True

    def holder(self) -> Holder | None:
        # a bigint key shows in pg_locks as classid (high 32 bits), objid (low), objsubid 1
        high, low = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        conn = self._connect("close-sync lock probe")
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT a.application_name, a.backend_start FROM pg_locks l"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                    " AND l.classid = %s AND l.objid = %s",
                    (high, low),
                )
                row = cursor.fetchone()
        finally:
            conn.close()
        if not row:
            return None
        parts = (row[0] or "").split(" ")
        since = row[1].astimezone(UTC).isoformat(timespec="seconds") if row[1] else ""
        if len(parts) >= 4 and parts[0] == "close-sync":
            return Holder(parts[1], parts[3], int(parts[2]), since)
        return Holder("?", "?", 0, since)

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ending the session releases the lock
            self._conn = None


def this_process(run_id: str) -> Holder:
    """The holder description of this process for run `run_id`."""
    return Holder(
        run_id, socket.gethostname(), os.getpid(), datetime.now(UTC).isoformat(timespec="seconds")
    )
