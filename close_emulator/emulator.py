"""The emulator's state and every mutation Close can make to an email, each writing the events
Close would write."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
import threading
import weakref
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import events as ev
from .clock import DAY_US, US, Clock, fmt, parse_iso, rfc2822, to_us, truncate_ms
from .events import Actor
from .faults import Faults
from .generator import (
    ALPHABET,
    STATUSES,
    EmailFactory,
    Generator,
    World,
    address,
    body_parts,
    make_lead,
    new_id,
    opens_summary,
    sync_bodies,
    to_json,
)
from .ratelimit import RateLimiter
from .store import EmailQuery, EmailRow, Store

DATE_FIELDS = ("date_created", "date_updated", "activity_at", "date_sent", "date_scheduled")
READ_ONLY = ("id", "_type", "organization_id")
BATCH = 5000


@dataclass
class EmulatorConfig:
    """Behaviour switches; change at runtime with `Emulator.set_config`."""

    api_key: str | None = None  # None: any non-empty key is accepted
    rate: float = 20.0  # requests per second per key per endpoint group; 0 = unlimited
    rate_window: float = 1.0  # seconds per fixed rate-limit window
    rate_fractional_reset: bool = False  # `reset=0.412` instead of whole seconds
    legacy_rate_headers: bool = False  # also send X-Rate-Limit-Limit/-Remaining/-Reset
    max_skip: int = 250000
    max_limit: int = 100
    event_max_limit: int = 50
    retention_days: float = 30
    history_days: int = 730
    history_shape: str = "recent"  # recent, uniform, sparse, burst or mix (generator.py)
    burst_fraction: float = 0.9  # burst shape: the share of threads on the burst day
    request_log_size: int = 100_000  # entries the request log keeps (the oldest go first)
    thread_delete_email_events: bool = True  # deleting a thread also emits per-email 'deleted'
    naive_event_timestamps: bool = True  # event date_created/date_updated without offset
    naive_write_timestamps: bool = False  # create/update answers: timestamps without offset, µs


@dataclass
class LogEntry:
    """One API request: `time` at arrival and `answered` when the response went out (after any
    injected latency; for a dropped connection, when it was closed), both emulator-clock epoch
    seconds; `wait` is, on a 429, the longest wait its signals announced (seconds)."""

    time: float
    method: str
    path: str
    query: dict[str, str]
    status: int  # 0 when the connection was dropped without a response
    group: str
    answered: float | None = None
    wait: float | None = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return dataclasses.asdict(self)


class RequestLog:
    """The last `maxlen` API requests, oldest first; list-like and thread-safe. Also counts every
    request since the last `clear` by status, however many entries the log still holds."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self._entries: deque[LogEntry] = deque(maxlen=maxlen)
        self._by_status: Counter[int] = Counter()
        self._lock = threading.Lock()

    @property
    def maxlen(self) -> int:
        """How many entries the log keeps."""
        return self._entries.maxlen or 0

    def resize(self, maxlen: int) -> None:
        """Keep up to `maxlen` entries from now on (the newest ones stay)."""
        if maxlen < 1:
            raise ValueError("request_log_size must be at least 1")
        with self._lock:
            self._entries = deque(self._entries, maxlen=maxlen)

    def append(self, entry: LogEntry) -> None:
        """Record one request."""
        with self._lock:
            self._entries.append(entry)
            self._by_status[entry.status] += 1

    def clear(self) -> None:
        """Forget all entries and reset the counts."""
        with self._lock:
            self._entries.clear()
            self._by_status.clear()

    def counts(self) -> dict[str, Any]:
        """{"total", "by_status": {"200": n, ...}, "kept"} since the last `clear`."""
        with self._lock:
            by_status = {str(status): n for status, n in sorted(self._by_status.items())}
            return {
                "total": sum(self._by_status.values()),
                "by_status": by_status,
                "kept": len(self._entries),
            }

    def snapshot(self) -> list[LogEntry]:
        """A copy of the entries."""
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(self.snapshot())

    def __getitem__(self, index: int | slice) -> Any:
        return self.snapshot()[index]


class Emulator:
    """A Close organization in SQLite, plus clock, faults, rate limiter and request log."""

    def __init__(self, config: EmulatorConfig | None = None, db_path: str | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.clock = Clock()
        self.faults = Faults()
        self.request_log = RequestLog(self.config.request_log_size)
        self.ratelimiter = RateLimiter()
        self._tmpdir: str | None = None
        if db_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="close_emulator_")
            db_path = os.path.join(self._tmpdir, "close.sqlite")
        self.db_path = db_path
        self.store = Store(db_path)
        self._cleanup = weakref.finalize(self, _cleanup, self.store, self._tmpdir)
        self._rng = random.Random("mutations")
        world = self.store.get_meta("world")
        if world is None:
            self.world = World.build(random.Random(0), 5)
            self.store.set_meta("world", self.world.to_json())
        else:
            self.world = World(**world)

    def close(self) -> None:
        """Close the database (and delete it when it was a temporary file)."""
        self._cleanup()

    # --- data generation ------------------------------------------------------------------------

    def generate(self, n_emails: int, seed: int) -> None:
        """Replace all data with `n_emails` seeded emails (plus 'created' events in retention)."""
        with self.store.write_lock:
            now = truncate_ms(self.clock.now_us())
            rng = random.Random(seed)
            world = World.build(rng, max(3, min(200, n_emails // 2000 + 5)))
            leads = [make_lead(rng, world) for _ in range(max(1, n_emails // 20))]
            self.store.wipe()
            self.world = world
            cutoff = now - int(self.config.retention_days * DAY_US)
            config = self.config
            generator = Generator(
                world,
                leads,
                seed,
                now,
                config.history_days,
                config.history_shape,
                config.burst_fraction,
            )
            erng = random.Random(f"events-{seed}")
            rows: list[EmailRow] = []
            event_rows: list[tuple] = []
            for row, email in generator.emails(n_emails):
                rows.append(row)
                if row[1] >= cutoff:
                    actor = Actor(new_id(erng, "req_", 22), email["created_by"] or email["user_id"])
                    event_rows.append(
                        self._event_row(
                            erng, row[1], actor, "created", email, {}, ev.EMAIL, row[0], row[4]
                        )
                    )
                if len(rows) >= BATCH:
                    self.store.bulk_insert(rows, event_rows)
                    rows, event_rows = [], []
            lead_rows = [(lead["id"], json.dumps(lead)) for lead in leads]
            self.store.bulk_insert(rows, event_rows, lead_rows)
            self.store.create_indexes()
            self.store.set_meta("world", world.to_json())
            self.store.set_meta(
                "generation", {**self.generation_key(n_emails, seed), "now_us": now}
            )
            self._rng = random.Random(f"mutations-{seed}")

    def generation(self) -> dict[str, Any] | None:
        """`generation_key(...)` plus "now_us" of the last `generate` on this database, or None."""
        return self.store.get_meta("generation")

    def generation_key(self, n_emails: int, seed: int) -> dict[str, Any]:
        """What determines generated data besides the clock: size, seed and history settings."""
        config = self.config
        return {
            "n_emails": n_emails,
            "seed": seed,
            "history_days": config.history_days,
            "history_shape": config.history_shape,
            "burst_fraction": config.burst_fraction,
        }

    # --- reading --------------------------------------------------------------------------------

    def get_email(self, email_id: str) -> dict | None:
        """One email as the API returns it, or None."""
        with self.store.reader() as conn:
            text = self.store.email_data(conn, email_id)
        return None if text is None else json.loads(text)

    def all_emails(self) -> list[dict]:
        """Every stored email as the API returns it, newest first."""
        return [json.loads(text) for batch in self.store.iter_email_data() for text in batch]

    def get_lead(self, lead_id: str) -> dict | None:
        """One lead (id, display_name, contacts, ...), or None."""
        with self.store.reader() as conn:
            return self.store.lead_data(conn, lead_id)

    def me(self) -> dict[str, str]:
        """The user owning the API key."""
        return self.world.users[0]

    # --- mutations ------------------------------------------------------------------------------

    def create_email(self, *, actor: Actor | None = None, **fields: Any) -> dict:
        """Create an email like `POST /activity/email/`; missing fields get defaults."""
        with self.store.transaction() as conn:
            return self._create(conn, _normalize(fields), actor)

    def _create(
        self, conn: Any, fields: dict, actor: Actor | None, reply_to: dict | None = None
    ) -> dict:
        status = fields.get("status", "sent")
        if status not in STATUSES:
            raise ValueError(f"invalid status: {status}")
        now = self._stamp()
        lead = self._lead_for(conn, fields.get("lead_id"))
        contact = next(
            (c for c in lead["contacts"] if c["id"] == fields.get("contact_id")),
            lead["contacts"][0] if lead["contacts"] else None,
        )
        user = (
            self.world.user(fields.get("user_id"))
            or self.world.user(actor.user_id if actor else None)
            or self.world.user(lead.get("user_id"))
            or self.me()
        )
        email = self._compose(lead, contact, user, status, now, fields, reply_to)
        email.update({k: v for k, v in fields.items() if k != "id"})
        sync_bodies(email, fields)
        if email["created_by"] is None:
            email.pop("created_by_name", None)
        if "opens" in fields and "opens_summary" not in fields:
            email["opens_summary"] = opens_summary(email["opens"] or [])
        actor = actor or self._actor(email["created_by"] or email["user_id"])
        self.store.put_email(conn, _row(email))
        self._event(conn, now, actor, "created", email, {})
        return email

    def _compose(
        self,
        lead: dict,
        contact: dict | None,
        user: dict,
        status: str,
        now: int,
        fields: dict,
        reply_to: dict | None,
    ) -> dict:
        direction = fields.get("direction") or ("incoming" if status == "inbox" else "outgoing")
        created = _us(fields.get("date_created")) or now
        sent = _us(fields.get("date_sent"))
        if sent is None and status in ("sent", "inbox"):
            sent = created
        scheduled = _us(fields.get("date_scheduled"))
        if status == "scheduled" and scheduled is None:
            raise ValueError("a scheduled email needs date_scheduled")
        activity = {"draft": None, "scheduled": scheduled}.get(status, sent or created)
        factory = EmailFactory(self.world, self._rng)
        greet = contact["name"].split(" ")[0] if contact and contact["name"] else ""
        email = factory.compose(
            email_id=fields.get("id") or new_id(self._rng, "acti_"),
            lead=lead,
            contact=contact,
            user=user,
            direction=direction,
            status=status,
            subject=fields.get("subject") or "(no subject)",
            date_created=created,
            date_updated=max(now, created),
            date_sent=sent,
            date_scheduled=scheduled,
            activity_at=_us(fields.get("activity_at")) or activity,
            thread_id=reply_to["thread_id"] if reply_to else None,
            reply_to=reply_to,
            body=body_parts(self._rng, greet, user["name"]),
            envelope_kind="full" if status in ("sent", "inbox") else "empty",
        )
        email["created_by"], email["created_by_name"] = user["id"], user["name"]
        email["updated_by"], email["updated_by_name"] = user["id"], user["name"]
        return email

    def update_email(self, email_id: str, *, actor: Actor | None = None, **changes: Any) -> dict:
        """Change fields (PUT semantics): bumps date_updated, writes an 'updated' event."""
        with self.store.transaction() as conn:
            old = self._load(conn, email_id)
            return self._save(conn, old, _normalize(changes), actor)

    def remove_field(self, email_id: str, name: str) -> dict:
        """Schema drift: Close stops sending field `name` of this email (an 'updated' event)."""
        with self.store.transaction() as conn:
            old = self._load(conn, email_id)
            if name in READ_ONLY or name not in old:
                raise ValueError(f"cannot remove field {name!r}")
            return self._save(conn, old, {}, None, touch_user=False, removed=(name,))

    def delete_email(self, email_id: str, *, actor: Actor | None = None) -> None:
        """Delete an email: a 'deleted' event with its last state."""
        with self.store.transaction() as conn:
            old = self._load(conn, email_id)
            self._remove(conn, old, actor or self._actor(old["user_id"]), self._stamp())

    def delete_thread(self, thread_id: str, *, actor: Actor | None = None) -> list[str]:
        """Delete a thread's emails: an activity.email_thread 'deleted' event, plus per-email
        'deleted' events when `config.thread_delete_email_events`. Returns the deleted ids."""
        with self.store.transaction() as conn:
            ids = self.store.email_ids_where(conn, "thread_id", thread_id)
            if not ids:
                raise KeyError(thread_id)
            emails = [self._load(conn, email_id) for email_id in ids]
            first = emails[0]
            actor = actor or self._actor(first["user_id"])
            now = self._stamp()
            for email in emails:
                if self.config.thread_delete_email_events:
                    self._remove(conn, email, actor, now)
                else:
                    self.store.delete_email(conn, email["id"])
            thread = {
                "_type": "EmailThread",
                "id": thread_id,
                "organization_id": self.world.organization_id,
                "lead_id": first["lead_id"],
                "contact_id": first["contact_id"],
                "user_id": first["user_id"],
                "subject": first["subject"],
                "n_emails": len(emails),
                "latest_normalized_subject": emails[-1]["subject"],
                "date_created": first["date_created"],
                "date_updated": emails[-1]["date_updated"],
                "activity_at": first["activity_at"],
            }
            self._event(conn, now, actor, "deleted", None, thread, object_type=ev.THREAD)
        return ids

    def delete_lead(self, lead_id: str, *, actor: Actor | None = None) -> list[str]:
        """Delete a lead and its emails ('deleted' per email, then the lead's 'deleted')."""
        with self.store.transaction() as conn:
            lead = self.store.lead_data(conn, lead_id)
            ids = self.store.email_ids_where(conn, "lead_id", lead_id)
            if lead is None and not ids:
                raise KeyError(lead_id)
            actor = actor or self._actor(self.me()["id"])
            now = self._stamp()
            for email_id in ids:
                self._remove(conn, self._load(conn, email_id), actor, now)
            self.store.delete_lead(conn, lead_id)
            self._lead_event(conn, now, actor, lead_id, lead)
        return ids

    def merge_leads(
        self, source_lead_id: str, destination_lead_id: str, *, actor: Actor | None = None
    ) -> list[str]:
        """Merge `source` into `destination`: its emails move (an 'updated' event each) and the
        source lead is deleted; all events carry the merge ids in `meta`."""
        if source_lead_id == destination_lead_id:  # would delete the lead and keep its emails
            raise ValueError(f"cannot merge lead {source_lead_id} into itself")
        meta = {
            "merge_source_lead_id": source_lead_id,
            "merge_destination_lead_id": destination_lead_id,
        }
        with self.store.transaction() as conn:
            source = self.store.lead_data(conn, source_lead_id)
            destination = self.store.lead_data(conn, destination_lead_id)
            if source is None:
                raise KeyError(source_lead_id)
            if destination is None:
                raise KeyError(destination_lead_id)
            actor = actor or self._actor(self.me()["id"])
            ids = self.store.email_ids_where(conn, "lead_id", source_lead_id)
            for email_id in ids:
                old = self._load(conn, email_id)
                self._save(conn, old, {"lead_id": destination_lead_id}, actor, meta)
            destination["contacts"] += source["contacts"]
            self.store.put_lead(conn, destination)
            self.store.delete_lead(conn, source_lead_id)
            self._lead_event(conn, self._stamp(), actor, source_lead_id, source, meta)
        return ids

    def record_open(self, email_id: str) -> dict:
        """The recipient opened the email: appends to `opens`, sets `opens_summary`."""
        with self.store.transaction() as conn:
            old = self._load(conn, email_id)
            factory = EmailFactory(self.world, self._rng)
            opens = [*(old.get("opens") or []), factory.open_entry(old, self._stamp())]
            changes = {"opens": opens, "opens_summary": opens_summary(opens)}
            return self._save(conn, old, changes, self._actor(None), touch_user=False)

    def receive_reply(self, email_id: str) -> dict:
        """The contact replied: creates the incoming reply in the same thread (returned) and
        sets `has_reply` on the email."""
        with self.store.transaction() as conn:
            original = self._load(conn, email_id)
            subject = original["subject"] or ""
            fields = {
                "status": "inbox",
                "direction": "incoming",
                "lead_id": original["lead_id"],
                "contact_id": original["contact_id"],
                "user_id": original["user_id"],
                "subject": subject if subject.startswith("Re: ") else f"Re: {subject}",
                "created_by": None,
            }
            reply = self._create(conn, fields, self._actor(None), reply_to=original)
            self._save(conn, original, {"has_reply": True}, self._actor(None), touch_user=False)
        return reply

    def schedule_draft(self, email_id: str, when: datetime | str) -> dict:
        """draft -> scheduled, with date_scheduled = activity_at = `when` (future allowed)."""
        with self.store.transaction() as conn:
            old = self._load(conn, email_id)
            if old["status"] != "draft":
                raise ValueError(f"only drafts can be scheduled (status is {old['status']})")
            at = fmt(_us(when))
            changes = {"status": "scheduled", "date_scheduled": at, "activity_at": at}
            return self._save(conn, old, changes, None)

    def send_email(self, email_id: str) -> dict:
        """draft/scheduled/outbox -> sent, with date_sent = activity_at = now."""
        with self.store.transaction() as conn:
            old = self._load(conn, email_id)
            if old["status"] not in ("draft", "scheduled", "outbox"):
                raise ValueError(f"cannot send an email with status {old['status']}")
            now = self._stamp(_us(old["date_updated"]))
            mid = f"<{now // 1000}.{self._rng.randrange(10**5)}@smtpgw.close.com>"
            user = self.world.user(old["user_id"]) or self.me()
            envelope = {
                "from": [self.world.person(user)],
                "sender": [self.world.person(user)],
                "to": [{"email": addr, "name": ""} for addr in old["to"]],
                "cc": [{"email": addr, "name": ""} for addr in old["cc"]],
                "bcc": [{"email": addr, "name": ""} for addr in old["bcc"]],
                "reply_to": [],
                "subject": old["subject"],
                "date": rfc2822(now),
                "message_id": mid,
                "in_reply_to": None,
                "is_autoreply": False,
            }
            changes = {
                "status": "sent",
                "date_sent": fmt(now),
                "activity_at": fmt(now),
                "message_ids": [mid],
                "envelope": envelope,
                "sender": old["sender"] or address(self.world.person(user)),
            }
            return self._save(conn, old, changes, None)

    def remove_attachment(self, email_id: str, index: int = 0) -> dict:
        """Remove one attachment (by position)."""
        with self.store.transaction() as conn:
            old = self._load(conn, email_id)
            attachments = list(old.get("attachments") or [])
            if not 0 <= index < len(attachments):
                raise ValueError(f"email {email_id} has no attachment #{index}")
            del attachments[index]
            return self._save(conn, old, {"attachments": attachments}, None)

    def reassign_lead(self, email_id: str, lead_id: str) -> dict:
        """Move the email to another lead (and that lead's first contact)."""
        with self.store.transaction() as conn:
            old = self._load(conn, email_id)
            lead = self._lead_for(conn, lead_id)
            contact = lead["contacts"][0]["id"] if lead["contacts"] else None
            return self._save(conn, old, {"lead_id": lead_id, "contact_id": contact}, None)

    def add_late_email(self, days_old: float, **fields: Any) -> dict:
        """A synced email that happened `days_old` days ago and appears now: date_created,
        date_sent and activity_at in the past, its 'created' event dated now."""
        at = truncate_ms(self.clock.now_us() - int(days_old * DAY_US))
        at -= at % US
        defaults = {
            "status": "inbox",
            "date_created": fmt(at),
            "date_sent": fmt(at),
            "activity_at": fmt(at),
        }
        return self.create_email(**{**defaults, **fields})

    def set_config(self, **kwargs: Any) -> None:
        """Change config fields; unknown names raise ValueError."""
        names = {f.name for f in dataclasses.fields(EmulatorConfig)}
        unknown = set(kwargs) - names
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        if "request_log_size" in kwargs:
            self.request_log.resize(int(kwargs["request_log_size"]))
        for key, value in kwargs.items():
            setattr(self.config, key, value)

    # --- page drift (a fault) -------------------------------------------------------------------

    def apply_drift(self, query: EmailQuery, served: int) -> None:
        """Insert and delete emails in `query`'s window after `served` rows have been listed.

        Inserts sort before everything served (pushing later pages down: duplicates); deletes hit
        the rows right after the served ones (or, with `drift_delete_served`, the last served
        rows, which shifts later pages up: skipped rows).
        """
        n_insert, n_delete, delete_served = self.faults.drift_plan()
        window = dataclasses.replace(query, skip=0, limit=served + n_delete, order="-date_created")
        rows = self.store.select_emails(window, "id, date_created_us, activity_at_us")
        now = truncate_ms(self.clock.now_us())
        high = min(_upper(query.date_created, now), now)
        top = rows[0] if rows else None
        low = top[1] if top else _lower(query.date_created, high - DAY_US)
        if top and top[2] is not None:
            activity = top[2]
        else:
            activity = min(_upper(query.activity_at, now), now) if query.activity_at else None
        inserted = []
        for _ in range(n_insert):
            first_ms, last_ms = low // 1000 + 1, high // 1000
            at = self._rng.randint(first_ms, last_ms) * 1000 if first_ms <= last_ms else low
            fields: dict[str, Any] = {
                "status": "inbox",
                "date_created": fmt(at),
                "date_sent": fmt(at),
                "activity_at": fmt(at if activity is None else activity),
            }
            if query.lead_ids:
                fields["lead_id"] = query.lead_ids[0]
            if query.user_ids:
                fields["user_id"] = query.user_ids[0]
            if at == low:  # no room above the newest row: win the tie on id
                fields["id"] = new_id(self._rng, "acti_zzzz", 39)
            inserted.append(self.create_email(**fields)["id"])
        victims = rows[max(0, served - n_delete) : served] if delete_served else rows[served:]
        deleted = []
        for row in victims[:n_delete]:
            self.delete_email(row[0])
            deleted.append(row[0])
        self.faults.record_drift(inserted, deleted)

    # --- internals ------------------------------------------------------------------------------

    def actor_for_request(self, api_key: str, path: str, method: str) -> Actor:
        """The actor of a mutation made through the API with `api_key`."""
        digest = hashlib.sha256(api_key.encode()).digest()
        key_id = "api_" + "".join(ALPHABET[b % 62] for b in digest[:22])
        return Actor(
            new_id(self._rng, "req_", 22),
            self.me()["id"],
            key_id,
            {"request_path": path, "request_method": method},
        )

    def _actor(self, user_id: str | None) -> Actor:
        return Actor(new_id(self._rng, "req_", 22), user_id)

    def _stamp(self, after_us: int | None = None) -> int:
        """Now, at millisecond precision, strictly after `after_us` when given."""
        now = truncate_ms(self.clock.now_us())
        return now if after_us is None else max(now, after_us + 1000)

    def _load(self, conn: Any, email_id: str) -> dict:
        text = self.store.email_data(conn, email_id)
        if text is None:
            raise KeyError(email_id)
        return json.loads(text)

    def _lead_for(self, conn: Any, lead_id: str | None) -> dict:
        """An existing lead (a stub is created for an unknown id), or a random one for None."""
        if lead_id is None:
            lead = self.store.random_lead(self._rng.random())
            if lead is not None:
                return lead
            lead_id = new_id(self._rng, "lead_")
        lead = self.store.lead_data(conn, lead_id)
        if lead is None:
            lead = make_lead(self._rng, self.world)
            lead["id"] = lead_id
            self.store.put_lead(conn, lead)
        return lead

    def _save(
        self,
        conn: Any,
        old: dict,
        changes: dict,
        actor: Actor | None,
        meta: dict | None = None,
        touch_user: bool = True,
        removed: tuple[str, ...] = (),
    ) -> dict:
        """Apply `changes` (and drop the `removed` fields), bump date_updated, store, and write
        the 'updated' event."""
        bad = set(changes) & set(READ_ONLY)
        if bad:
            raise ValueError(f"read-only fields: {', '.join(sorted(bad))}")
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"invalid status: {changes['status']}")
        new = {key: value for key, value in {**old, **changes}.items() if key not in removed}
        sync_bodies(new, changes)
        if "opens" in changes and "opens_summary" not in changes:
            new["opens_summary"] = opens_summary(new["opens"] or [])
        actor = actor or self._actor(old["user_id"])
        if touch_user and actor.user_id and self.world.user(actor.user_id):
            new["updated_by"] = actor.user_id
            new["updated_by_name"] = self.world.user(actor.user_id)["name"]
        if "date_updated" not in changes:
            new["date_updated"] = fmt(self._stamp(_us(old["date_updated"])))
        changed = sorted(k for k in new if new[k] != old.get(k)) + sorted(removed)
        if changed == ["date_updated"] or not changed:
            return old
        self.store.put_email(conn, _row(new))
        previous = {k: old.get(k) for k in changed}
        at = max(self._stamp(), _us(new["date_updated"]))
        self._event(conn, at, actor, "updated", new, previous, changed=changed, meta=meta)
        return new

    def _remove(self, conn: Any, email: dict, actor: Actor, now: int) -> None:
        self.store.delete_email(conn, email["id"])
        self._event(conn, now, actor, "deleted", None, email)

    def _event(
        self,
        conn: Any,
        at_us: int,
        actor: Actor,
        action: str,
        data: dict | None,
        previous: dict | None,
        *,
        object_type: str = ev.EMAIL,
        lead_id: str | None = None,
        changed: list[str] | None = None,
        meta: dict | None = None,
    ) -> None:
        """Write one event about `data` (or, on delete, `previous`)."""
        obj = data or previous or {}
        row = self._event_row(
            self._rng,
            at_us,
            actor,
            action,
            data,
            previous,
            object_type,
            obj["id"],
            lead_id or obj.get("lead_id"),
            changed,
            meta,
        )
        self.store.add_event(conn, row)

    def _event_row(
        self,
        rng: random.Random,
        at_us: int,
        actor: Actor,
        action: str,
        data: dict | None,
        previous: dict | None,
        object_type: str,
        object_id: str,
        lead_id: str | None,
        changed: list[str] | None = None,
        meta: dict | None = None,
    ) -> tuple:
        """A row for `Store.add_event`."""
        body = ev.event_body(
            self.world.organization_id,
            actor,
            object_type,
            object_id,
            lead_id,
            action,
            data,
            previous,
            changed,
            meta,
        )
        event_id = new_id(rng, "ev_", 22)
        return (
            event_id,
            at_us,
            at_us,
            object_type,
            object_id,
            action,
            lead_id,
            actor.user_id,
            actor.request_id,
            body,
        )

    def _lead_event(
        self,
        conn: Any,
        at_us: int,
        actor: Actor,
        lead_id: str,
        lead: dict | None,
        meta: dict | None = None,
    ) -> None:
        """The 'deleted' event of a lead, with its last state."""
        previous = lead or {"id": lead_id, "organization_id": self.world.organization_id}
        previous = {k: v for k, v in previous.items() if k != "user_id"}
        self._event(
            conn,
            at_us,
            actor,
            "deleted",
            None,
            previous,
            object_type=ev.LEAD,
            lead_id=lead_id,
            meta=meta,
        )


def _us(value: Any) -> int | None:
    """An ISO string or datetime as epoch microseconds (None stays None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_us(value if value.tzinfo else value.replace(tzinfo=UTC))
    return to_us(parse_iso(str(value)))


def _normalize(fields: dict[str, Any]) -> dict[str, Any]:
    """Date fields to Close's output format; other values unchanged."""
    out = dict(fields)
    for key in DATE_FIELDS:
        if out.get(key) is not None:
            out[key] = fmt(_us(out[key]))
    return out


def _row(email: dict) -> EmailRow:
    return (
        email["id"],
        _us(email["date_created"]),
        _us(email.get("activity_at")),
        _us(email["date_updated"]),
        email.get("lead_id"),
        email.get("contact_id"),
        email.get("user_id"),
        email["organization_id"],
        email.get("thread_id"),
        email["status"],
        to_json(email),
    )  # type: ignore[return-value]


def _lower(bounds: dict[str, int], default: int) -> int:
    """The exclusive lower limit of date bounds (`default` when unbounded)."""
    limits = [bounds["gt"]] if "gt" in bounds else []
    limits += [bounds["gte"] - 1] if "gte" in bounds else []
    return max(limits) if limits else default


def _upper(bounds: dict[str, int], default: int) -> int:
    """The inclusive upper limit of date bounds (`default` when unbounded)."""
    limits = [bounds["lt"] - 1] if "lt" in bounds else []
    limits += [bounds["lte"]] if "lte" in bounds else []
    return min(limits) if limits else default


def _cleanup(store: Store, tmpdir: str | None) -> None:
    store.close()
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)
