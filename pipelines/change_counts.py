"""Exact counts of emails new, updated and deleted by one run, for its summary and `sync_runs`.

A run re-reads emails it does not need to (the change scan rescans five minutes back, a
backfill re-reads its whole range), so the rows it loads overstate what changed. This
counter sees every `emails` row the source yields and compares it with the version the
warehouse held before the run: an email is new when the warehouse did not have it, updated
when its `date_updated` differs, deleted when a deletion marker removes one it had; an email
re-read with the same `date_updated` counts in none of them.
"""

import threading
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Any

import dlt
import pyarrow as pa
from dlt.destinations.exceptions import DatabaseUndefinedRelation, DestinationUndefinedEntity

from sources.close.columns import DELETED_COLUMN
from sources.close.rows import count_emails

# How many ids one warehouse lookup asks for (`id IN (...)`).
LOOKUP_BATCH = 1000

VersionLookup = Callable[[Collection[str]], dict[str, datetime]]


class EmailChangeCounter:
    """Classifies the emails of one run against the warehouse as it was before the run.

    `lookup(ids)` returns the stored `date_updated` of those of `ids` the warehouse holds.
    An id is looked up the first time the run yields it, so before this run loaded it: later
    chunks of the same run then cannot mistake their own earlier load for the old version.
    With `warehouse_empty` nothing is looked up or kept (a first sync, which may hold
    millions of emails): everything stored at the end is new.
    """

    def __init__(self, lookup: VersionLookup, warehouse_empty: bool) -> None:
        self._lookup = lookup
        self._empty = warehouse_empty
        self._lock = threading.Lock()
        self._before: dict[str, datetime] = {}  # ids stored before the run -> date_updated
        self._absent: set[str] = set()  # ids the warehouse did not hold before the run
        self._last: dict[str, tuple[datetime | None, bool]] = {}  # -> (version, deleted)
        self.emails_seen = 0  # email rows yielded (markers left out), for progress

    def observe(self, item: Any, meta: Any = None) -> Any:
        """A dlt map step: notes the `emails` rows of `item` and returns `item` unchanged."""
        table = getattr(item, "data", item)
        if not isinstance(table, pa.Table) or not _is_root(table):
            return item
        with self._lock:
            self.emails_seen += count_emails([table])
            if self._empty:
                return item  # everything is new: counted from the table at the end
            ids = table.column("id").to_pylist()
            versions = table.column("date_updated").to_pylist()
            deleted = table.column(DELETED_COLUMN).to_pylist()
            self._look_up(i for i in ids if i not in self._before and i not in self._absent)
            for email_id, version, gone in zip(ids, versions, deleted, strict=True):
                self._last[email_id] = (version, bool(gone))
        return item

    def _look_up(self, ids: Iterable[str]) -> None:
        todo = list(dict.fromkeys(ids))
        for start in range(0, len(todo), LOOKUP_BATCH):
            batch = todo[start : start + LOOKUP_BATCH]
            stored = self._lookup(batch)
            self._before.update(stored)
            self._absent.update(i for i in batch if i not in stored)

    def counts(self, stored_after: int) -> dict[str, int]:
        """`{"new": …, "updated": …, "deleted": …}` for the emails seen so far.

        `stored_after` is the number of emails stored now: into an empty warehouse every
        stored email is new, and nothing was there to update or delete.
        """
        if self._empty:
            return {"new": stored_after, "updated": 0, "deleted": 0}
        new = updated = deleted = 0
        for email_id, (version, gone) in self._last.items():
            if email_id in self._before:
                if gone:
                    deleted += 1
                elif version != self._before[email_id]:
                    updated += 1
            elif not gone:
                new += 1
        return {"new": new, "updated": updated, "deleted": deleted}


def _is_root(table: pa.Table) -> bool:
    """The `emails` table (child tables carry `email_id`, not `id`)."""
    names = table.column_names
    return "id" in names and "date_updated" in names and "email_id" not in names


def warehouse_versions(pipeline: dlt.Pipeline) -> VersionLookup:
    """`lookup(ids)` over the pipeline's `emails` table: stored `date_updated` by id."""

    def lookup(ids: Collection[str]) -> dict[str, datetime]:
        if not ids:
            return {}
        placeholders = ", ".join(["%s"] * len(ids))
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("emails")
            sql = f"SELECT id, date_updated FROM {table} WHERE id IN ({placeholders})"
            try:
                rows = client.execute_sql(sql, *ids) or []
            except (DatabaseUndefinedRelation, DestinationUndefinedEntity):
                return {}  # nothing loaded yet
        return {row[0]: row[1] for row in rows}

    return lookup
