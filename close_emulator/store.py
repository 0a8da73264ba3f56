"""SQLite storage for emails, leads, the event log and a little metadata.

Readers take a connection from a pool (WAL mode lets them run while a write is in progress);
all writes go through one connection guarded by a lock.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

EMAIL_COLUMNS = (
    "id, date_created_us, activity_at_us, date_updated_us, lead_id, contact_id, user_id, "
    "organization_id, thread_id, status, data"
)
EmailRow = tuple[str, int, int | None, int, str | None, str | None, str | None, str, str, str, str]

_TABLES = """
CREATE TABLE IF NOT EXISTS emails (
    id TEXT NOT NULL,
    date_created_us INTEGER NOT NULL,
    activity_at_us INTEGER,
    date_updated_us INTEGER NOT NULL,
    lead_id TEXT,
    contact_id TEXT,
    user_id TEXT,
    organization_id TEXT NOT NULL,
    thread_id TEXT,
    status TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leads (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    date_created_us INTEGER NOT NULL,
    date_updated_us INTEGER NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    action TEXT NOT NULL,
    lead_id TEXT,
    user_id TEXT,
    request_id TEXT,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS emails_id ON emails (id);
CREATE INDEX IF NOT EXISTS emails_created ON emails (date_created_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS emails_activity ON emails (activity_at_us, date_created_us, id);
CREATE INDEX IF NOT EXISTS emails_lead ON emails (lead_id, date_created_us);
CREATE INDEX IF NOT EXISTS emails_thread ON emails (thread_id);
CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events (id);
CREATE INDEX IF NOT EXISTS events_updated ON events (date_updated_us, seq);
CREATE INDEX IF NOT EXISTS events_type ON events (object_type, action, date_updated_us);
CREATE INDEX IF NOT EXISTS events_object ON events (object_id);
CREATE INDEX IF NOT EXISTS events_lead ON events (lead_id);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id);
CREATE INDEX IF NOT EXISTS events_request ON events (request_id);
"""

_ORDERS = {
    "-date_created": "date_created_us DESC, id DESC",
    "date_created": "date_created_us ASC, id ASC",
    "-activity_at": "activity_at_us DESC, id DESC",
}
_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


@dataclass
class EmailQuery:
    """Filters, order and window of an email list request (timestamps in epoch microseconds)."""

    ids: list[str] | None = None
    lead_ids: list[str] | None = None
    contact_ids: list[str] | None = None
    user_ids: list[str] | None = None
    organization_id: str | None = None
    date_created: dict[str, int] = field(default_factory=dict)  # op ("gt", ...) -> value
    activity_at: dict[str, int] = field(default_factory=dict)
    order: str = "-date_created"
    limit: int = 100
    skip: int = 0
    empty: bool = False  # a filter that can match nothing (e.g. `_type=Call`)

    def where(self) -> tuple[str, list[Any]]:
        """The SQL WHERE clause and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (
            ("id", self.ids),
            ("lead_id", self.lead_ids),
            ("contact_id", self.contact_ids),
            ("user_id", self.user_ids),
        ):
            if values is not None:
                clauses.append(f"{column} IN ({','.join('?' * len(values))})")
                params.extend(values)
        if self.organization_id is not None:
            clauses.append("organization_id = ?")
            params.append(self.organization_id)
        for column, bounds in (
            ("date_created_us", self.date_created),
            ("activity_at_us", self.activity_at),
        ):
            for op, value in bounds.items():
                clauses.append(f"{column} {_OPS[op]} ?")
                params.append(value)
        if self.empty:
            clauses.append("0")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class Store:
    """The SQLite database behind one emulator."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.write_lock = threading.RLock()
        self._pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.executescript(_TABLES + _INDEXES)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA busy_timeout=10000")
        self._all.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection."""
        for conn in self._all:
            conn.close()
        self._all.clear()

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection for reads."""
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        finally:
            self._pool.put(conn)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The writer connection inside BEGIN IMMEDIATE ... COMMIT (rolled back on error)."""
        with self.write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")

    # --- bulk loading ----------------------------------------------------------------------------

    def wipe(self) -> None:
        """Drop all data and the secondary indexes (bulk loads re-create them afterwards)."""
        with self.write_lock:
            for name in ("emails", "leads", "events", "meta"):
                self._writer.execute(f"DROP TABLE IF EXISTS {name}")
            self._writer.executescript(_TABLES)

    def bulk_insert(
        self, emails: Sequence[EmailRow], events: Sequence[tuple] = (), leads: Sequence = ()
    ) -> None:
        """Insert many rows in one transaction."""
        with self.transaction() as conn:
            conn.executemany(f"INSERT INTO emails ({EMAIL_COLUMNS}) VALUES ({_QMARKS})", emails)
            conn.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({_EV_QMARKS})", events)
            conn.executemany("INSERT INTO leads (id, data) VALUES (?, ?)", leads)

    def create_indexes(self) -> None:
        """Create the secondary indexes and refresh the planner statistics."""
        with self.write_lock:
            self._writer.executescript(_INDEXES + "ANALYZE;")

    # --- metadata --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        """A JSON value stored under `key`, or None."""
        with self.reader() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under `key`."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    # --- emails ----------------------------------------------------------------------------------

    def email_data(self, conn: sqlite3.Connection, email_id: str) -> str | None:
        """The stored JSON text of one email, or None."""
        row = conn.execute("SELECT data FROM emails WHERE id = ?", (email_id,)).fetchone()
        return None if row is None else row[0]

    def select_emails(self, query: EmailQuery, columns: str = "data") -> list[tuple]:
        """The rows of one page of `query` (`limit` rows after `skip`)."""
        where, params = query.where()
        order = _ORDERS[query.order]
        # Find the page's rowids through the (covering) indexes first, then read the rows:
        # sorting never has to carry the large `data` column.
        sql = (
            f"SELECT {columns} FROM emails WHERE rowid IN "
            f"(SELECT rowid FROM emails{where} ORDER BY {order} LIMIT ? OFFSET ?) ORDER BY {order}"
        )
        with self.reader() as conn:
            return conn.execute(sql, [*params, query.limit, query.skip]).fetchall()

    def iter_email_data(self, batch: int = 2000) -> Iterator[list[str]]:
        """All stored emails' JSON texts, newest first, in batches."""
        last: tuple[int, str] | None = None
        while True:
            with self.reader() as conn:
                if last is None:
                    rows = conn.execute(
                        "SELECT date_created_us, id, data FROM emails "
                        "ORDER BY date_created_us DESC, id DESC LIMIT ?",
                        (batch,),
                    ).fetchall()
                else:
                    rows = conn.execute(
                        "SELECT date_created_us, id, data FROM emails "
                        "WHERE (date_created_us, id) < (?, ?) "
                        "ORDER BY date_created_us DESC, id DESC LIMIT ?",
                        (*last, batch),
                    ).fetchall()
            if not rows:
                return
            yield [row[2] for row in rows]
            last = rows[-1][0], rows[-1][1]

    @staticmethod
    def put_email(conn: sqlite3.Connection, row: EmailRow) -> None:
        """Insert or replace one email row."""
        conn.execute(f"INSERT OR REPLACE INTO emails ({EMAIL_COLUMNS}) VALUES ({_QMARKS})", row)

    @staticmethod
    def delete_email(conn: sqlite3.Connection, email_id: str) -> None:
        """Delete one email row."""
        conn.execute("DELETE FROM emails WHERE id = ?", (email_id,))

    @staticmethod
    def email_ids_where(conn: sqlite3.Connection, column: str, value: str) -> list[str]:
        """Ids of the emails whose `column` (lead_id or thread_id) equals `value`, oldest first."""
        assert column in ("lead_id", "thread_id")
        rows = conn.execute(
            f"SELECT id FROM emails WHERE {column} = ? ORDER BY date_created_us, id", (value,)
        ).fetchall()
        return [row[0] for row in rows]

    # --- leads -----------------------------------------------------------------------------------

    def lead_data(self, conn: sqlite3.Connection, lead_id: str) -> dict | None:
        """One lead object, or None."""
        row = conn.execute("SELECT data FROM leads WHERE id = ?", (lead_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def random_lead(self, pick: float) -> dict | None:
        """A lead chosen by `pick` in [0, 1) (rowid order), or None when there are none."""
        with self.reader() as conn:
            count = conn.execute("SELECT count(*) FROM leads").fetchone()[0]
            if not count:
                return None
            row = conn.execute(
                "SELECT data FROM leads ORDER BY rowid LIMIT 1 OFFSET ?", (int(pick * count),)
            ).fetchone()
        return json.loads(row[0])

    @staticmethod
    def put_lead(conn: sqlite3.Connection, lead: dict) -> None:
        """Insert or replace one lead."""
        conn.execute(
            "INSERT OR REPLACE INTO leads (id, data) VALUES (?, ?)", (lead["id"], json.dumps(lead))
        )

    @staticmethod
    def delete_lead(conn: sqlite3.Connection, lead_id: str) -> None:
        """Delete one lead."""
        conn.execute("DELETE FROM leads WHERE id = ?", (lead_id,))

    # --- events ----------------------------------------------------------------------------------

    @staticmethod
    def add_event(conn: sqlite3.Connection, row: tuple) -> None:
        """Append one event row (see EVENT_COLUMNS)."""
        conn.execute(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({_EV_QMARKS})", row)

    def select_events(
        self,
        filters: dict[str, str],
        bounds: list[tuple[str, int]],
        anchor: tuple[int, int] | None,
        newer: bool,
        limit: int,
    ) -> list[tuple[int, int, int, str, str]]:
        """Rows (seq, date_created_us, date_updated_us, id, body) of one page of the event log.

        `bounds` are (gt/gte/lt/lte, value) limits on date_updated; `anchor` is
        (date_updated_us, seq) of the row the page continues from, `newer` the direction (older
        pages by default).
        Rows always come back newest first.
        """
        clauses = [f"{key} = ?" for key in filters]
        params: list[Any] = list(filters.values())
        for op, value in bounds:
            clauses.append(f"date_updated_us {_OPS[op]} ?")
            params.append(value)
        if anchor is not None:
            clauses.append(f"(date_updated_us, seq) {'>' if newer else '<'} (?, ?)")
            params.extend(anchor)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        direction = "ASC" if newer else "DESC"
        sql = (
            f"SELECT seq, date_created_us, date_updated_us, id, body FROM events{where} "
            f"ORDER BY date_updated_us {direction}, seq {direction} LIMIT ?"
        )
        with self.reader() as conn:
            rows = conn.execute(sql, [*params, limit]).fetchall()
        return rows[::-1] if newer else rows

    def event_row(self, event_id: str) -> tuple[int, int, str, str] | None:
        """(date_created_us, date_updated_us, id, body) of one event, or None."""
        with self.reader() as conn:
            return conn.execute(
                "SELECT date_created_us, date_updated_us, id, body FROM events WHERE id = ?",
                (event_id,),
            ).fetchone()

    def purge_events(self, before_us: int) -> None:
        """Delete events last updated before `before_us`."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM events WHERE date_updated_us < ?", (before_us,))


EVENT_COLUMNS = (
    "id, date_created_us, date_updated_us, object_type, object_id, action, lead_id, user_id, "
    "request_id, body"
)
_QMARKS = ",".join("?" * 11)
_EV_QMARKS = ",".join("?" * 10)
