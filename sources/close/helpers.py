"""Walking Close's email list and event log, and shaping emails into rows.

The list endpoint sorts newest `date_created` first and pages with `_skip`. Plain `_skip`
paging over changing data drifts: an email inserted above the current offset pushes rows
into the next page (duplicates), one deleted below it pulls a row into the page already
read (a miss). `walk_window` therefore anchors every page at the oldest `date_created`
already seen (`date_created__lte=<anchor>`) and skips only the rows seen *at* that exact
timestamp, so inserts and deletes elsewhere in the window cannot shift the pages, and
`_skip` stays tiny however large the window is (Close caps it at 250,000).
"""

import email.utils
import logging
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum

from .client import CloseApiError, CloseClient
from .columns import DELETED_COLUMN
from .settings import (
    BODY_FIELDS,
    EMAILS_PATH,
    ID_BATCH_SIZE,
    MAX_SKIP,
    MAX_URL_ID_LIST_CHARS,
    PAGE_LIMIT,
)

logger = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------- time values


def parse_timestamp(value: Any) -> datetime | None:
    """Parses Close's ISO timestamps (with or without microseconds, `Z`, offset or naive UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(value)  # fast path, covers Close's own output
        except ValueError:
            parsed = pendulum.parse(value)  # type: ignore[assignment]
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_rfc2822(value: Any) -> datetime | None:
    """Parses an envelope `date` header (RFC 2822, maybe with a trailing comment); None if junk.

    The standard library's mail parser is used rather than pendulum: it is the parser built
    for this header and tolerates the `(UTC)` / `(added by …)` comments Close passes through.
    """
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    """Formats a filter value the way Close prints timestamps (UTC, `+00:00`)."""
    return value.astimezone(UTC).isoformat()


# ----------------------------------------------------------------------------- email rows


def email_to_row(email_obj: dict[str, Any], include_bodies: bool = True) -> dict[str, Any]:
    """Shapes one Close email into an `emails` row with its child lists.

    Timestamps become datetimes; the envelope's scalars stay as `envelope__*` columns (plus
    `envelope__date_utc`, the parsed Date header), while its address lists, the attachments,
    opens, send attempts and Message-IDs become child lists whose rows carry `email_id` and a
    0-based `position` — dlt loads them as nested tables keyed by the email's root id, so they
    are replaced together with the email. Unknown fields pass through as new columns.
    """
    row = dict(email_obj)
    email_id = row["id"]
    row.pop("_type", None)
    for name in TIMESTAMP_FIELDS:
        if name in row:
            row[name] = parse_timestamp(row[name])
    if not include_bodies:
        for name in BODY_FIELDS:
            row[name] = None

    envelope = row.pop("envelope", None) or {}
    row["recipients"] = _recipients(email_id, envelope, row)
    envelope_scalars = {k: v for k, v in envelope.items() if k not in RECIPIENT_ROLES}
    envelope_scalars["date_utc"] = parse_rfc2822(envelope.get("date"))
    row["envelope"] = envelope_scalars

    row["attachments"] = [
        {"email_id": email_id, "position": position, **attachment}
        for position, attachment in enumerate(row.get("attachments") or [])
    ]
    row["opens"] = [
        {
            "email_id": email_id,
            "position": position,
            **opened,
            "opened_at": parse_timestamp(opened.get("opened_at")),
        }
        for position, opened in enumerate(row.get("opens") or [])
    ]
    row["send_attempts"] = [
        {
            "email_id": email_id,
            "position": position,
            **attempt,
            "date": parse_timestamp(attempt.get("date")),
        }
        for position, attempt in enumerate(row.get("send_attempts") or [])
    ]
    row["message_ids"] = [
        {"email_id": email_id, "kind": kind, "position": position, "value": value}
        for kind, values in (
            ("message_id", row.get("message_ids")),
            ("reference", row.pop("references", None)),
        )
        for position, value in enumerate(values or [])
    ]
    return row


def _recipients(
    email_id: str, envelope: dict[str, Any], row: dict[str, Any]
) -> list[dict[str, Any]]:
    """Addresses by role: from the envelope when it has any, else from top-level fields."""
    by_role: dict[str, list[Any]] = {role: envelope.get(role) or [] for role in RECIPIENT_ROLES}
    if not any(by_role.values()):
        sender_name, sender_address = email.utils.parseaddr(row.get("sender") or "")
        by_role = {
            "from": [{"name": sender_name, "email": sender_address}] if sender_address else [],
            "to": row.get("to") or [],
            "cc": row.get("cc") or [],
            "bcc": row.get("bcc") or [],
        }
    recipients = []
    for role, addresses in by_role.items():
        for position, address in enumerate(addresses):
            if isinstance(address, str):
                name, addr = email.utils.parseaddr(address)
                address = {"email": addr or address, "name": name}
            recipients.append(
                {
                    "email_id": email_id,
                    "role": role,
                    "position": position,
                    "email": address.get("email") or None,
                    "name": address.get("name") or None,
                }
            )
    return recipients


def deletion_marker(email_id: str, deleted_at: datetime) -> dict[str, Any]:
    """A row that makes the merge remove the email and all of its child rows."""
    return {"id": email_id, "date_updated": deleted_at, DELETED_COLUMN: True}


# ------------------------------------------------------------------------ windows and walks


@dataclass(frozen=True)
class Window:
    """A half-open range `[start, end)` of `field` (`date_created` or `activity_at`).

    A self-contained unit of work: it carries its own bounds and pages, so several windows
    can be fetched at once under one rate limiter.
    """

    field: str
    start: datetime
    end: datetime

    def params(self) -> dict[str, str]:
        return {
            f"{self.field}__gte": format_timestamp(self.start),
            f"{self.field}__lt": format_timestamp(self.end),
        }


def make_windows(field: str, start: datetime, end: datetime, length: timedelta) -> list[Window]:
    """Splits `[start, end)` into consecutive windows of at most `length`, oldest first."""
    windows = []
    while start < end:
        upper = min(end, start + length)
        windows.append(Window(field, start, upper))
        start = upper
    return windows


def walk_window(
    client: CloseClient, window: Window, fields: Sequence[str] | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Yields the pages of emails in `window`, newest `date_created` first, each email once.

    Pages are anchored at the oldest `date_created` seen so far (see the module docstring),
    which makes the walk immune to `_skip` drift and keeps `_skip` far below `max_skip`.
    Anchoring relies on Close's newest-first order, which is observed, not documented: a
    page out of that order switches the window to plain `_skip` paging from its start.
    """
    base = window.params()
    if fields:
        base["_fields"] = ",".join(sorted(set(fields) | {"id", "date_created"}))
    anchored = True
    anchor: datetime | None = None
    seen_at_anchor = 0  # rows seen with date_created == anchor (anchored paging)
    listed = 0  # rows listed since the window's start (plain paging)
    seen_ids: set[str] = set()
    while True:
        skip = seen_at_anchor if anchored else listed
        params: dict[str, Any] = dict(base, _limit=PAGE_LIMIT, _skip=skip)
        if anchored and anchor is not None:
            params["date_created__lte"] = format_timestamp(anchor)
        if skip > MAX_SKIP:
            raise CloseApiError(
                f"more than {MAX_SKIP} emails in the window {window.start} - {window.end}"
                " cannot be paged; lower window_days"
            )
        page = client.get(EMAILS_PATH, params)
        emails = page.get("data") or []
        listed += len(emails)
        fresh = [e for e in emails if e["id"] not in seen_ids]
        if fresh:
            seen_ids.update(e["id"] for e in fresh)
            yield fresh
        if not page.get("has_more") or not emails:
            return
        if not anchored:
            continue
        created = [parse_timestamp(e["date_created"]) for e in emails]
        if any(newer > older for older, newer in zip(created, created[1:], strict=False)):  # type: ignore[operator]
            logger.warning("Close listed emails out of newest-first order: plain _skip paging")
            anchored, listed = False, 0
            continue
        for moment in created:
            if moment == anchor:
                seen_at_anchor += 1
            elif anchor is None or moment < anchor:  # type: ignore[operator]
                anchor, seen_at_anchor = moment, 1


def walk_windows(
    client: CloseClient,
    windows: Sequence[Window],
    concurrency: int,
    fields: Sequence[str] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Walks several windows at once (`concurrency` threads) and yields their pages.

    Pages arrive in completion order; a bounded queue keeps memory flat when the consumer
    (dlt's normalizer buffer) is slower than the API.
    """
    if concurrency <= 1 or len(windows) <= 1:
        for window in windows:
            yield from walk_window(client, window, fields)
        return
    pages: queue.Queue[Any] = queue.Queue(maxsize=concurrency * 4)
    stop = threading.Event()

    def hand_over(item: Any) -> bool:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(window: Window) -> None:
        try:
            for page in walk_window(client, window, fields):
                if not hand_over(page):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            hand_over(exc)

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="close-window")
    futures = [pool.submit(run, window) for window in windows]
    try:
        finished = 0
        while finished < len(futures):
            try:
                item = pages.get(timeout=0.1)
            except queue.Empty:
                finished = sum(f.done() for f in futures)
                continue
            if isinstance(item, BaseException):
                raise item
            yield item
        while not pages.empty():
            item = pages.get_nowait()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------- ids and events


def fetch_by_ids(
    client: CloseClient, ids: Iterable[str], fields: Sequence[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Yields the emails among `ids` that exist in Close now (`id__in`, 100 per request)."""
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), ID_BATCH_SIZE):
        batch = ordered[start : start + ID_BATCH_SIZE]
        params: dict[str, Any] = {"id__in": ",".join(batch), "_limit": PAGE_LIMIT}
        if fields:
            params["_fields"] = ",".join(fields)
        if len(params["id__in"]) > MAX_URL_ID_LIST_CHARS:
            page = client.get_long(EMAILS_PATH, params)
        else:
            page = client.get(EMAILS_PATH, params)
        yield from page.get("data") or []
