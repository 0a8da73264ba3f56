"""Shaping pages of Close emails into pyarrow tables: `emails` and its five child tables.

A page of emails becomes one arrow table per table, built column by column. dlt's arrow path
writes such tables to parquet (or csv) as they are, without walking every row in Python the
way its JSON normalizer does for dict rows.

`emails` merges on `id` (delete-insert, newest `date_updated` wins, `_deleted` marker rows
hard-delete). Each child table (`emails__recipients`, …; the `email_*` views select from them)
is a table of its own that merges on `email_id` (`merge_key`): loading any rows of an email
first deletes all of its stored child rows. Hence an email whose list is now empty, and a
deleted email, get one marker row (`_slot` -1, `_deleted` true) that triggers that delete and
is not stored itself. Two versions of an email in one load: child rows are keyed by
(`email_id`, `_slot`, the index in the email's list) and deduplicated by `_version` (the
email's `date_updated`), and `_LoadMemory` remembers what was shaped in the current load, so
an older version coming later is skipped and a newer one also hard-deletes the slots only the
older version had.

Fields Close adds later arrive as new `emails` columns, typed by arrow per page and made to
agree with the column already in the schema (or put into a `<name>__v_text` variant column,
as dlt's own normalizer does, when a value does not fit the stored type).
"""

import email.utils
import functools
import logging
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import dlt
import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from dlt.common.schema.typing import TColumnSchema, TTableSchemaColumns, TWriteDispositionConfig
from dlt.extract.hints import TResourceHints

from .columns import CHILD_COLUMNS, DELETED_COLUMN, EMAIL_COLUMNS, ColumnSpec, to_hints
from .settings import BODY_FIELDS
from .timestamps import parse_timestamp, rfc2822_column

TIMESTAMP_FIELDS = ("date_created", "date_updated", "date_sent", "date_scheduled", "activity_at")
RECIPIENT_ROLES = ("from", "sender", "to", "cc", "bcc", "reply_to")
# Every field of Close's Email object except the bodies: what `_fields` asks for when bodies
# are excluded. Fields Close adds later arrive only once listed here.
NON_BODY_FIELDS = (
    "id", "_type", "organization_id", "lead_id", "contact_id", "user_id", "user_name",
    "direction", "status", "subject", "sender", "to", "cc", "bcc", "date_created",
    "date_updated", "date_sent", "date_scheduled", "activity_at", "thread_id",
    "in_reply_to_id", "has_reply", "opens", "opens_summary", "attachments", "envelope",
    "send_attempts", "message_ids", "references", "template_id", "template_name",
    "sequence_id", "sequence_name", "sequence_subscription_id", "followup_sequence_id",
    "followup_sequence_delay", "followup_sequence_add_cc_bcc", "bulk_email_action_id",
    "need_smtp_credentials", "email_account_id", "send_as_id", "users", "created_by",
    "created_by_name", "updated_by", "updated_by_name", "agent_action_reason",
    "agent_config_id",
)  # fmt: skip

ROOT_TABLE = "emails"
CHILD_TABLE_NAMES = {key: f"{ROOT_TABLE}__{key}" for key in CHILD_COLUMNS}
# Top-level fields that become child rows or envelope columns instead of columns of their own.
CONSUMED_FIELDS = {"_type", "envelope", "attachments", "opens", "send_attempts", "message_ids",
                   "references"}  # fmt: skip
ENVELOPE_PREFIX = "envelope__"
SLOT, VERSION = "_slot", "_version"  # a child row's index in its email's list; the email's version
MARKER_SLOT = -1

ARROW_TYPES = {
    "text": pa.string(),
    "json": pa.string(),  # JSON text: csv cannot carry arrow lists, and both engines parse it
    "bigint": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}

MERGE: TWriteDispositionConfig = {"disposition": "merge", "strategy": "delete-insert"}
DELETED_HINT: TColumnSchema = {
    "name": DELETED_COLUMN,
    "data_type": "bool",
    "nullable": True,
    "hard_delete": True,
    "description": "Deletion marker used by the merge; never true in a stored row",
}
EMAIL_HINTS: TTableSchemaColumns = {
    **to_hints(EMAIL_COLUMNS),
    "date_updated": {**to_hints(EMAIL_COLUMNS)["date_updated"], "dedup_sort": "desc"},
    DELETED_COLUMN: DELETED_HINT,
}
CHILD_SYSTEM_HINTS: TTableSchemaColumns = {
    SLOT: {"name": SLOT, "data_type": "bigint", "nullable": False,
           "description": "Index of the row in its email's list (-1: a deletion marker)"},
    VERSION: {"name": VERSION, "data_type": "timestamp", "timezone": True, "nullable": True,
              "dedup_sort": "desc", "description": "`date_updated` of the email version"},
    DELETED_COLUMN: DELETED_HINT,
}  # fmt: skip


def _arrow_schema(spec: ColumnSpec, extra: TTableSchemaColumns) -> pa.Schema:
    """The arrow schema of a table: its typed columns (nullable but the keys), then `extra`."""
    keys = ("id", "email_id", SLOT)
    fields = [pa.field(n, ARROW_TYPES[t], nullable=n not in keys) for n, (t, _d) in spec.items()]
    extra_fields = [pa.field(n, ARROW_TYPES[str(c.get("data_type"))], nullable=n not in keys)
                    for n, c in extra.items()]  # fmt: skip
    return pa.schema(fields + extra_fields)


ROOT_SCHEMA = _arrow_schema(EMAIL_COLUMNS, {DELETED_COLUMN: DELETED_HINT})
CHILD_SCHEMAS = {
    key: _arrow_schema(spec, CHILD_SYSTEM_HINTS) for key, spec in CHILD_COLUMNS.items()
}
ROOT_HINTS = dlt.mark.make_hints(table_name=ROOT_TABLE, primary_key="id", columns=EMAIL_HINTS)
CHILD_HINTS = {
    key: dlt.mark.make_hints(
        table_name=CHILD_TABLE_NAMES[key],
        primary_key=["email_id", SLOT],
        merge_key="email_id",
        columns={
            **to_hints(spec),
            "email_id": {**to_hints(spec)["email_id"], "nullable": False},
            **CHILD_SYSTEM_HINTS,
        },
    )
    for key, spec in CHILD_COLUMNS.items()
}
_KNOWN_ROOT = set(EMAIL_COLUMNS) | {DELETED_COLUMN}
_ENVELOPE_COLUMNS = [n for n in EMAIL_COLUMNS if n.startswith(ENVELOPE_PREFIX)]
_CHILD_FIELDS = {key: [n for n in spec if n != "email_id"] for key, spec in CHILD_COLUMNS.items()}  # fmt: skip


def resource_hints() -> dict[str, Any]:
    """Keyword arguments for `dlt.resource(...)` of every resource writing the emails tables.

    Only the table and the merge: every item of `shape` and `deletion_items` carries its
    table's full hints as a dlt table variant. dlt starts a variant from the resource's static
    hints, so `emails` columns or keys here would leak into the child tables. The hints are the
    same for every resource (dlt keeps whichever hints of a shared table it saw first, so
    different ones would lose e.g. `hard_delete`).
    """
    return {"table_name": ROOT_TABLE, "write_disposition": MERGE}


def shape(emails: list[dict[str, Any]], include_bodies: bool) -> list[Any]:
    """Returns the items to yield for a page of Close emails: the `emails` arrow table and one
    arrow table per child table (empty ones too, so that every table exists from the first
    load), each wrapped with its table's hints.

    Timestamps become UTC timestamps; the envelope's scalars become `envelope__*` columns (plus
    `envelope__date_utc`, the parsed Date header); its address lists (or, without an envelope,
    the top-level sender/to/cc/bcc), the attachments, opens, send attempts and Message-IDs
    become child rows carrying `email_id` and a 0-based `position`. Without bodies the body
    columns are NULL. Unknown fields become new columns. A version of an email older than, or
    the same as, one already shaped for the current load is left out.
    """
    emails, earlier = _MEMORY.admit(emails)
    shaped = _build(emails, earlier, include_bodies)
    for email_id, lengths in shaped.lengths.items():
        _MEMORY.record(email_id, lengths)
    return _items(shaped)


@dataclass
class Shaped:
    """A batch of emails shaped as if nothing of them were in the current load yet.

    Built by `preshape` outside dlt's extract (in a thread of its own, while a chunk loads);
    `finish` turns it into items inside the extract, where the load's memory and the schema
    are known.
    """

    root: pa.Table  # known columns only, one row per email (the newest version per id)
    unknown: dict[str, list[Any]]  # fields this code does not know, fitted in `finish`
    children: dict[str, pa.Table]
    versions: dict[str, float]  # email id -> `_version_key`
    lengths: dict[str, tuple[int, ...]]  # email id -> lengths of its lists
    markers: dict[str, int]  # marker rows per child table name
    once: bool = False  # no email of it is in an earlier batch of its walk (`_Listed`)


def preshape(
    emails: list[dict[str, Any]], include_bodies: bool, stored: bool = True, once: bool = False
) -> Shaped:
    """Shapes a batch without dlt's context (safe in any thread): see `Shaped`.

    `stored=False` says that no email of the batch can have rows in the warehouse yet (the
    walk of a first sync into an empty warehouse): an empty list then needs no marker row,
    as there is nothing of it to delete (a fifth of a first sync's child rows). `once` says
    that no email of the batch was in an earlier batch of the same walk (anchored paging):
    the load's memory then keeps them compactly.
    """
    return replace(_build(list(_newest(emails).values()), {}, include_bodies, stored), once=once)


def combine(parts: list[Shaped]) -> Shaped:
    """One batch of batches that share no email (pages shaped one by one): the tables
    concatenated into single chunks, the unknown fields padded with NULLs where absent."""
    if len(parts) == 1:
        return parts[0]
    names = list(dict.fromkeys(name for part in parts for name in part.unknown))
    unknown = {
        name: [value for part in parts
               for value in part.unknown.get(name) or [None] * part.root.num_rows]
        for name in names
    }  # fmt: skip
    markers: dict[str, int] = {}
    for part in parts:
        for table, rows in part.markers.items():
            markers[table] = markers.get(table, 0) + rows
    return Shaped(
        root=pa.concat_tables([part.root for part in parts]).combine_chunks(),
        unknown=unknown,
        children={
            key: pa.concat_tables([part.children[key] for part in parts]).combine_chunks()
            for key in parts[0].children
        },  # fmt: skip
        versions={i: v for part in parts for i, v in part.versions.items()},
        lengths={i: n for part in parts for i, n in part.lengths.items()},
        markers=markers,
        once=all(part.once for part in parts),
    )


def finish(shaped: Shaped) -> list[Any]:
    """The items of a shaped batch for the load being extracted (see `shape`).

    An email already shaped for this load in the same or a newer version is left out; one
    replacing an older version gets deletion markers for the slots only that one had.
    """
    stale, earlier = _MEMORY.take(shaped.versions, shaped.lengths, shaped.once)
    if stale:
        shaped = _without(shaped, stale)
    if earlier:
        shaped = _with_old_slots_deleted(shaped, earlier)
    return _items(shaped)


def _without(shaped: Shaped, ids: set[str]) -> Shaped:
    """The batch without the emails `ids` (rare: the walk listed an email twice in a load)."""
    gone = pa.array(sorted(ids), pa.string())
    keep = pc.invert(pc.is_in(shaped.root.column("id"), value_set=gone))
    kept = keep.to_pylist()
    children = {key: table.filter(pc.invert(pc.is_in(table.column("email_id"), value_set=gone)))
                for key, table in shaped.children.items()}  # fmt: skip
    unknown = {name: [v for v, k in zip(values, kept, strict=True) if k]
               for name, values in shaped.unknown.items()}  # fmt: skip
    versions = {i: v for i, v in shaped.versions.items() if i not in ids}
    return replace(shaped, root=shaped.root.filter(keep), children=children, unknown=unknown,
                   versions=versions)  # fmt: skip


def _with_old_slots_deleted(shaped: Shaped, earlier: dict[str, tuple[int, ...]]) -> Shaped:
    """Adds deletion markers for the slots that earlier versions in this load had beyond the
    new lists' lengths (as `_child_rows` does when shaping against the load's memory)."""
    ids = shaped.root.column("id").to_pylist()
    updated = dict(zip(ids, shaped.root.column("date_updated").to_pylist(), strict=True))
    children, markers = dict(shaped.children), dict(shaped.markers)
    for index, key in enumerate(CHILD_COLUMNS):
        slots = [(email_id, slot) for email_id, before in earlier.items()
                 for slot in range(shaped.lengths[email_id][index], _length(before, key))]  # fmt: skip
        if not slots:
            continue
        columns: dict[str, list[Any]] = {
            name: [None] * len(slots) for name in CHILD_SCHEMAS[key].names
        }
        columns["email_id"] = [email_id for email_id, _ in slots]
        columns[SLOT] = [slot for _, slot in slots]
        columns[VERSION] = [updated[email_id] for email_id, _ in slots]
        columns[DELETED_COLUMN] = [True] * len(slots)
        table = _to_table(columns, CHILD_SCHEMAS[key], CHILD_COLUMNS[key])
        children[key] = pa.concat_tables([children[key], table])
        name = CHILD_TABLE_NAMES[key]
        markers[name] = markers.get(name, 0) + len(slots)
    return replace(shaped, children=children, markers=markers)


def _items(shaped: Shaped) -> list[Any]:
    """The shaped tables wrapped for dlt, unknown fields fitted to the schema's types."""
    for table, rows in shaped.markers.items():
        _MEMORY.count_markers(table, rows)
    root = shaped.root
    for name, values in shaped.unknown.items():
        for column_name, array in _fit_unknown(name, values):
            root = root.append_column(column_name, array)
    mark = _marker()
    items = [mark(root, ROOT_HINTS)]
    items += [mark(table, CHILD_HINTS[key]) for key, table in shaped.children.items()]
    return items


def _build(
    emails: list[dict[str, Any]],
    earlier: dict[str, tuple[int, ...]],
    include_bodies: bool,
    stored: bool = True,
) -> Shaped:
    """The arrow tables of admitted emails; `earlier` has the list lengths of versions of
    them shaped before in this load (their extra slots get deletion markers); `stored`:
    see `preshape`."""
    lengths: dict[str, tuple[int, ...]] = {}
    markers: dict[str, int] = {}
    updated = [parse_timestamp(e.get("date_updated")) for e in emails]  # parsed once
    rows = _child_rows(emails, updated, earlier, lengths, markers, MARKER_SLOT if stored else 0)
    children = {key: _to_table(columns, CHILD_SCHEMAS[key], CHILD_COLUMNS[key])
                for key, columns in rows.items()}  # fmt: skip
    return Shaped(
        root=_root_table(emails, include_bodies),
        unknown=_unknown_fields(emails, [e.get("envelope") or {} for e in emails]),
        children=children,
        versions={e["id"]: _version_of(u) for e, u in zip(emails, updated, strict=True)},
        lengths=lengths,
        markers=markers,
    )


def deletion_items(ids: Iterable[str], deleted_at: datetime) -> list[Any]:
    """Returns the items that remove these emails and all of their child rows.

    An `emails` row per id with the `_deleted` marker, and a marker row per id in each child
    table (plus, for an email shaped earlier in this load, one per slot it had), all dated
    `deleted_at` so that they win the dedup against any version of the email in the same load.
    """
    ids = list(ids)
    if not ids:
        return []
    lengths = _MEMORY.forget(ids)
    root = {"id": ids, "date_updated": [deleted_at] * len(ids), DELETED_COLUMN: [True] * len(ids)}
    schema = pa.schema([ROOT_SCHEMA.field(name) for name in root])
    mark = _marker()
    items = [mark(pa.table(root, schema=schema), ROOT_HINTS)]
    for key in CHILD_COLUMNS:
        rows = [(email_id, slot) for email_id in ids
                for slot in range(MARKER_SLOT, _length(lengths.get(email_id), key))]  # fmt: skip
        columns = {"email_id": [r[0] for r in rows], SLOT: [r[1] for r in rows],
                   VERSION: [deleted_at] * len(rows), DELETED_COLUMN: [True] * len(rows)}  # fmt: skip
        schema = pa.schema([CHILD_SCHEMAS[key].field(name) for name in columns])
        _MEMORY.count_markers(CHILD_TABLE_NAMES[key], len(rows))
        items.append(mark(pa.table(columns, schema=schema), CHILD_HINTS[key]))
    return items


def count_emails(items: list[Any]) -> int:
    """How many email rows (deletion markers excluded) the items of `shape` and
    `deletion_items`, or plain dict rows, hold."""
    count = 0
    for item in items:
        table = getattr(item, "data", item)  # unwrap dlt's DataItemWithMeta
        meta = getattr(item, "meta", None)
        name = getattr(meta, "table_name", None) or (getattr(meta, "hints", None) or {}).get(
            "table_name", ROOT_TABLE
        )
        if isinstance(table, dict):
            count += not table.get(DELETED_COLUMN)
        elif isinstance(table, pa.Table) and name == ROOT_TABLE:
            marked = pc.sum(table.column(DELETED_COLUMN)).as_py() or 0
            count += table.num_rows - marked
    return count


def _marker() -> Callable[[pa.Table, TResourceHints], Any]:
    """How to send an arrow table to its table: by name when the resource being extracted
    already has every table's hints, else with the hints attached.

    dlt re-validates a table's hints for every arrow item (its contract cache does not cover
    arrow), at a cost that grows with the number of hinted columns, and hints attached to an
    item are merged into the resource first. So the first page registers every table's full
    hints as table variants on the running resource; from the second page on, once they are in
    the schema, slim variants keep only what arrow's own types would otherwise override (keys,
    merge hints, json columns), and items carry only their table's name.
    """
    try:
        resource = dlt.current.resource()
    except Exception:  # not inside an extract: the hints travel with each item
        return lambda table, hints: dlt.mark.with_hints(table, hints, create_table_variant=True)
    pages = _HINTED.get(resource, 0)
    if pages < 2:
        for hints in (ROOT_HINTS, *CHILD_HINTS.values()):
            if pages == 1:  # a variant's columns merge into the old ones unless cleared first
                resource.apply_hints(hints["table_name"], columns={}, create_table_variant=True)
            resource.merge_hints(hints if pages == 0 else _slim(hints), create_table_variant=True)
        _HINTED[resource] = pages + 1
    return lambda table, hints: dlt.mark.with_table_name(table, str(hints["table_name"]))


def _slim(hints: TResourceHints) -> TResourceHints:
    """A table's hints without the columns that arrow types exactly and the schema holds
    (json columns, keys, merge hints and non-null columns stay: arrow would change those)."""
    columns: TTableSchemaColumns = hints["original_columns"]  # type: ignore[typeddict-item,assignment]
    kept = {name: column for name, column in columns.items()
            if column.get("data_type") == "json" or column.get("nullable") is False
            or set(column) & _MERGE_PROPS}  # fmt: skip
    return dlt.mark.make_hints(
        table_name=hints["table_name"],  # type: ignore[arg-type]
        primary_key=hints.get("primary_key"),  # type: ignore[arg-type]
        merge_key=hints.get("merge_key"),  # type: ignore[arg-type]
        columns=kept,
    )


class _JsonTextWarningFilter(logging.Filter):
    """Drops dlt's warning that arrow and hint types differ, logged for every arrow item.

    The only difference is by design: json columns travel as JSON text (arrow `string`) and
    the `json` hint keeps them json; both destinations parse the text when loading.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "when merging arrow schema with dlt schema" not in record.getMessage()


logging.getLogger("dlt").addFilter(_JsonTextWarningFilter())

_MERGE_PROPS = {"primary_key", "merge_key", "hard_delete", "dedup_sort", "row_key"}
_HINTED: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()


class _Listed:
    """Versions and list lengths of the emails a walk listed once, as arrow columns.

    A walk's batch cannot repeat an email of an earlier one (anchored paging lists each email
    once), so only the few batches that may (the change scan joining a walk's last load) look
    these up. A dict entry per email took about 300 bytes (30 MB per 100,000 emails of a
    load); an arrow row takes about 80.
    """

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def add(self, versions: dict[str, float], lengths: dict[str, tuple[int, ...]]) -> None:
        """Remembers a batch's emails (none of them remembered yet)."""
        ids = list(versions)
        if not ids:
            return
        columns = {"id": pa.array(ids, pa.string()),
                   "version": pa.array(list(versions.values()), pa.float64())}  # fmt: skip
        for key in _KEYS:
            columns[key] = pa.array([_length(lengths.get(i), key) for i in ids], pa.int32())
        self.tables.append(pa.table(columns))

    def find(self, ids: list[str]) -> dict[str, tuple[float, tuple[int, ...]]]:
        """The remembered version and list lengths of those of `ids` listed here."""
        if not self.tables or not ids:
            return {}
        if len(self.tables) > 1:  # combined once per lookup after new batches, then reused
            self.tables = [pa.concat_tables(self.tables).combine_chunks()]
        table = self.tables[0]
        found = pc.index_in(pa.array(ids, pa.string()), value_set=table.column("id").chunk(0))
        rows = table.take(pc.drop_null(found)).to_pylist()
        return {row["id"]: (row["version"], tuple(row[key] for key in _KEYS)) for row in rows}


class _LoadMemory:
    """Which email versions were shaped for the current load, and how long their lists were.

    A load may hold two versions of an email (the walk and the event log both read it, or
    two re-fetches). `emails` keeps the newest by dedup in the staging table; for the child
    tables this memory does the same: an older (or the same) version shaped later is skipped,
    and a newer one learns which slots only the older one had, to hard-delete them. Keyed by
    dlt's load id (the extract in progress); outside an extract nothing is remembered.
    Emails of batches listed once (a walk's) go to `listed`, the others to `versions`, which
    wins where both have an email.
    """

    def __init__(self, marker_loads_kept: int = 2) -> None:
        # the load being extracted and its versions: an earlier load is never extracted
        # again, so its versions go (a hundred thousand emails take tens of MB)
        self.load_id: str | None = None
        self.versions: dict[str, tuple[float, tuple[int, ...]]] = {}
        self.listed = _Listed()
        # marker counts stay a while longer, for the run summary
        self.markers: dict[str, dict[str, int]] = {}
        self.marker_loads_kept = marker_loads_kept
        # the load of the page being shaped (looked up once per page: dlt's context is slow)
        self.seen: dict[str, tuple[float, tuple[int, ...]]] | None = None
        self.marked: dict[str, int] = {}

    def _load_id(self) -> str | None:
        try:
            return dlt.current.load_package_state()["load_id"]  # type: ignore[no-any-return]
        except Exception:  # not inside an extract: shaping for a test or by hand
            return None

    def _current(self) -> dict[str, tuple[float, tuple[int, ...]]] | None:
        """Selects the load being extracted for the page about to be shaped."""
        load_id = self._load_id()
        if load_id is None:
            self.seen, self.marked = None, {}
            return None
        if load_id != self.load_id:
            self.load_id, self.versions, self.listed = load_id, {}, _Listed()
            self.markers[load_id] = {}
            while len(self.markers) > self.marker_loads_kept:
                self.markers.pop(next(iter(self.markers)))
        self.seen, self.marked = self.versions, self.markers[load_id]
        return self.seen

    def _known(self, ids: Iterable[str]) -> dict[str, tuple[float, tuple[int, ...]]]:
        """What this load has of `ids` (call `_current` first)."""
        known = {i: self.versions[i] for i in ids if i in self.versions}
        rest = [i for i in ids if i not in known]
        return {**self.listed.find(rest), **known}

    def count_markers(self, table: str, rows: int) -> None:
        """Counts marker rows shaped for `table` in the current load (see `marker_rows`)."""
        if rows and self.seen is not None:
            self.marked[table] = self.marked.get(table, 0) + rows

    def admit(
        self, emails: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], dict[str, tuple[int, ...]]]:
        """The emails of a page newer than what this load has (newest per id), and the list
        lengths of the earlier versions they replace (`take`; `record` adds their lengths)."""
        newest = _newest(emails)
        stale, earlier = self.take({i: _version_key(e) for i, e in newest.items()}, {})
        return [e for i, e in newest.items() if i not in stale], earlier

    def record(self, email_id: str, lengths: tuple[int, ...]) -> None:
        """Remembers the lengths of an admitted email's lists (in `CHILD_COLUMNS` order); a
        tuple, not a dict, as a load may remember a few hundred thousand emails."""
        if self.seen is not None and email_id in self.seen:
            self.seen[email_id] = (self.seen[email_id][0], lengths)

    def take(
        self, versions: dict[str, float], lengths: dict[str, tuple[int, ...]], once: bool = False
    ) -> tuple[set[str], dict[str, tuple[int, ...]]]:
        """Remembers a batch shaped ahead (`preshape`) or a page (`admit`): returns the
        ids to leave out (this load has them in the same or a newer version) and the list
        lengths of the older versions the others replace. `once`: no email of the batch is
        in an earlier batch listed once (see `_Listed`)."""
        seen = self._current()
        if seen is None:
            return set(), {}
        known = {i: seen[i] for i in versions if i in seen} if once else self._known(versions)
        stale, earlier = set(), {}
        for email_id, before in known.items():
            if versions[email_id] <= before[0]:
                stale.add(email_id)
            else:
                earlier[email_id] = before[1]
        if once:  # the new ones go to `listed`; the dict keeps those it already had
            self.listed.add({i: v for i, v in versions.items() if i not in known}, lengths)
        for email_id in earlier if once else versions.keys() - stale:
            seen[email_id] = (versions[email_id], lengths.get(email_id, ()))
        return stale, earlier

    def forget(self, ids: list[str]) -> dict[str, tuple[int, ...]]:
        """List lengths of earlier versions of deleted emails; later versions are not shaped."""
        seen = self._current()
        if seen is None:
            return {}
        lengths = {i: before[1] for i, before in self._known(ids).items()}
        for email_id in ids:  # a deletion outranks every version: nothing after it is shaped
            seen[email_id] = (_DELETED_VERSION, ())
        return lengths


def _newest(emails: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest version of each email among `emails`, by id, in the order first seen."""
    newest: dict[str, dict[str, Any]] = {}
    for email_obj in emails:
        kept = newest.get(email_obj["id"])
        if kept is None or _version_key(email_obj) > _version_key(kept):
            newest[email_obj["id"]] = email_obj
    return newest


def _version_key(email_obj: dict[str, Any]) -> float:
    """Orders versions of an email by `date_updated` (missing ones first)."""
    return _version_of(parse_timestamp(email_obj.get("date_updated")))


def _version_of(updated: datetime | None) -> float:
    """`_version_key` of a parsed `date_updated`."""
    return updated.timestamp() if updated else float("-inf")


_DELETED_VERSION = float("inf")  # a deletion outranks every version
_KEYS = tuple(CHILD_COLUMNS)


def _length(lengths: tuple[int, ...] | None, key: str) -> int:
    """The remembered length of list `key` (0 when nothing is remembered)."""
    return lengths[_KEYS.index(key)] if lengths else 0


_MEMORY = _LoadMemory()


def marker_rows(load_id: str) -> dict[str, int]:
    """Marker rows shaped into each child table for the load `load_id` (rows that trigger a
    delete and are not stored), for the run summary's row counts."""
    return dict(_MEMORY.markers.get(load_id, {}))


def _root_table(emails: list[dict[str, Any]], include_bodies: bool) -> pa.Table:
    """The `emails` arrow table of a page, its known columns typed (see `_fit_unknown`)."""
    envelopes = [e.get("envelope") or {} for e in emails]
    columns: dict[str, Any] = {}
    for name in EMAIL_COLUMNS:
        if name.startswith(ENVELOPE_PREFIX):
            continue
        if not include_bodies and name in BODY_FIELDS:
            columns[name] = [None] * len(emails)
        else:
            columns[name] = [e.get(name) for e in emails]
    for name in _ENVELOPE_COLUMNS:
        columns[name] = [env.get(name[len(ENVELOPE_PREFIX) :]) for env in envelopes]
    columns["envelope__date_utc"] = rfc2822_column([env.get("date") for env in envelopes])
    columns[DELETED_COLUMN] = [None] * len(emails)
    return _to_table(columns, ROOT_SCHEMA, EMAIL_COLUMNS)


def _to_arrow(values: list[Any] | pa.Array, field: pa.Field, spec: ColumnSpec) -> pa.Array:
    """One known column as an arrow array of its declared type (given one: as it is)."""
    if isinstance(values, pa.Array):
        return values.cast(field.type)
    data_type = spec.get(field.name, ("", ""))[0]
    if data_type == "json":
        values = [None if v is None else orjson.dumps(v).decode() for v in values]
    elif data_type == "timestamp":
        if values and not all(v is None or isinstance(v, datetime) for v in values):
            try:  # arrow parses Close's ISO timestamps with an offset or `Z` in C
                return pa.array(values, pa.string()).cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                values = [parse_timestamp(v) for v in values]  # naive (UTC) or odd formats
    try:
        return pa.array(values, field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Close sent a value of another type than documented: keep what can be kept
        return pa.array([_coerce(v, field.type) for v in values], field.type)


def _coerce(value: Any, arrow_type: pa.DataType) -> Any:
    """A value that does not fit its column's type: as text for text columns, else NULL."""
    if value is None or not pa.types.is_string(arrow_type):
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _unknown_fields(
    emails: list[dict[str, Any]], envelopes: list[dict[str, Any]]
) -> dict[str, list[Any]]:
    """Fields this code does not know yet (top-level and envelope scalars), by column name."""
    found: dict[str, list[Any]] = {}
    top = set().union(*(e.keys() for e in emails)) - _KNOWN_ROOT - CONSUMED_FIELDS
    for name in sorted(top):
        found[name] = [e.get(name) for e in emails]
    in_envelope = set().union(*(env.keys() for env in envelopes)) - set(RECIPIENT_ROLES)
    for key in sorted(in_envelope):
        name = ENVELOPE_PREFIX + key
        if name not in _KNOWN_ROOT:
            found[name] = [env.get(key) for env in envelopes]
    return found


def _fit_unknown(name: str, values: list[Any]) -> list[tuple[str, pa.Array]]:
    """An unknown field as columns: arrow's type, or the type the schema already has for it.

    Nested values are stored as JSON text. When some values cannot take the stored type
    (Close changed the field's type), those go as text to a `<name>__v_text` variant column
    (the name dlt gives variants) and the rest stay typed in `<name>`: no row and no value
    is lost, and rows that still fit keep their column.
    """
    if any(isinstance(v, dict | list) for v in values):
        values = [None if v is None else orjson.dumps(v).decode() for v in values]
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed scalar types within the page
        array = pa.array([None if v is None else str(v) for v in values], pa.string())
    stored = _stored_type(name)
    if stored is None or array.type == stored or pa.types.is_null(array.type):
        return [(name, array)]
    try:
        return [(name, array.cast(stored))]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return _split_by_fit(name, array.to_pylist(), stored)


def _split_by_fit(name: str, values: list[Any], stored: pa.DataType) -> list[tuple[str, pa.Array]]:
    """`<name>` with the values that take `stored`, `<name>__v_text` with the others as text.

    Value by value, which is slow, but only a page that holds a changed type comes here.
    """
    typed: list[Any] = []
    other: list[str | None] = []
    for value in values:
        try:
            fitted = None if value is None else pa.array([value]).cast(stored)[0].as_py()
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            typed.append(None)
            other.append(str(value))
            continue
        typed.append(fitted)
        other.append(None)
    return [(name, pa.array(typed, stored)), (f"{name}__v_text", pa.array(other, pa.string()))]


def _stored_type(name: str) -> pa.DataType | None:
    """The arrow type of `emails.<name>` in the schema being extracted into, if it has one."""
    try:
        columns = dlt.current.source_schema().get_table_columns(ROOT_TABLE)
    except Exception:  # outside an extract (e.g. shaping in a test): nothing is stored yet
        return None
    data_type = columns.get(name, {}).get("data_type")
    return {"double": pa.float64(), **ARROW_TYPES}.get(data_type) if data_type else None


def _child_rows(
    emails: list[dict[str, Any]],
    updated: list[datetime | None],
    earlier: dict[str, tuple[int, ...]],
    lengths: dict[str, tuple[int, ...]],
    markers: dict[str, int],
    first_marker: int = MARKER_SLOT,
) -> dict[str, dict[str, list[Any]]]:
    """The child rows of a page as columns, per child table: each email's rows, a marker row
    if its list is empty (unless `first_marker` is 0), and hard-deleted slots an earlier
    version in this load had. Fills `lengths` (each email's list lengths) and `markers`
    (marker rows per child table)."""
    lists = [(e["id"], u, _lists(e)) for e, u in zip(emails, updated, strict=True)]
    for email_id, _version, by_key in lists:
        lengths[email_id] = tuple(len(by_key[key]) for key in _KEYS)
    children = {}
    for key in CHILD_COLUMNS:
        children[key], gone = _child_columns(key, lists, earlier, first_marker)
        if gone:
            markers[CHILD_TABLE_NAMES[key]] = markers.get(CHILD_TABLE_NAMES[key], 0) + gone
    return children


def _child_columns(
    key: str,
    lists: list[tuple[str, datetime | None, dict[str, list[dict[str, Any]]]]],
    earlier: dict[str, tuple[int, ...]],
    first_marker: int,
) -> tuple[dict[str, list[Any]], int]:
    """The columns of child table `key`: the rows of every email's list, then the marker
    rows (see `_child_rows`); and how many markers there are. Built a column at a time, as
    comprehensions: appending field by field, row by row, took twice as long."""
    rows = [(email_id, version, index, row) for email_id, version, by_key in lists
            for index, row in enumerate(by_key[key])]  # fmt: skip
    gone = [(email_id, version, slot) for email_id, version, by_key in lists
            for slot in _gone_slots(len(by_key[key]), _length(earlier.get(email_id), key),
                                    first_marker)]  # fmt: skip
    blanks = [None] * len(gone)
    columns: dict[str, list[Any]] = {"email_id": [r[0] for r in rows] + [g[0] for g in gone]}
    for name in _CHILD_FIELDS[key]:
        if name == "position":  # Close's lists carry none: the index in the list
            columns[name] = [r[3].get(name, r[2]) for r in rows] + blanks
        else:
            columns[name] = [r[3].get(name) for r in rows] + blanks
    columns[SLOT] = [r[2] for r in rows] + [g[2] for g in gone]
    columns[VERSION] = [r[1] for r in rows] + [g[1] for g in gone]
    columns[DELETED_COLUMN] = [None] * len(rows) + [True] * len(gone)
    return columns, len(gone)


def _gone_slots(length: int, before: int, first_marker: int) -> range:
    """Slots to hard-delete: those an earlier version had beyond the list's length, or, for
    an empty list, from `first_marker` on (the -1 marker deletes every stored row)."""
    return range(length, before) if length else range(first_marker, max(before, 0))


def _lists(email_obj: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The email's child lists by child table."""
    message_ids = [
        {"kind": kind, "position": position, "value": value}
        for kind, values in (
            ("message_id", email_obj.get("message_ids")),
            ("reference", email_obj.get("references")),
        )  # fmt: skip
        for position, value in enumerate(values or [])
    ]
    return {
        "recipients": _recipients(email_obj),
        "attachments": email_obj.get("attachments") or [],
        "opens": email_obj.get("opens") or [],
        "send_attempts": email_obj.get("send_attempts") or [],
        "message_ids": message_ids,
    }


def _to_table(columns: dict[str, list[Any]], schema: pa.Schema, spec: ColumnSpec) -> pa.Table:
    """Columns of values as an arrow table of `schema` (`spec` gives the declared types)."""
    arrays = [_to_arrow(columns[field.name], field, spec) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _recipients(email_obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Addresses with role and position: from the envelope when it has any, else from the
    top-level sender (`Name <addr>`, role `from`), to, cc and bcc. Empty names become NULL."""
    envelope = email_obj.get("envelope") or {}
    by_role: dict[str, list[Any]] = {role: envelope.get(role) or [] for role in RECIPIENT_ROLES}
    if not any(by_role.values()):
        sender_name, sender_address = _parse_address(email_obj.get("sender") or "")
        by_role = {
            "from": [{"name": sender_name, "email": sender_address}] if sender_address else [],
            "to": email_obj.get("to") or [],
            "cc": email_obj.get("cc") or [],
            "bcc": email_obj.get("bcc") or [],
        }
    recipients = []
    for role, addresses in by_role.items():
        for position, address in enumerate(addresses):
            if isinstance(address, str):
                name, addr = _parse_address(address)
                address = {"email": addr or address, "name": name}
            recipients.append(
                {
                    "role": role,
                    "position": position,
                    "email": address.get("email") or None,
                    "name": address.get("name") or None,
                }
            )
    return recipients


@functools.lru_cache(maxsize=4096)
def _parse_address(text: str) -> tuple[str, str]:
    """`Name <address>` as (name, address); cached, as a mailbox's few senders recur in
    most of its emails and the mail parser takes about 50 µs per call."""
    return email.utils.parseaddr(text)
