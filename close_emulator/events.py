"""Event log records: who caused a change, how events are stored and rendered, cursors and the
filter combinations `/event/` accepts."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from .clock import fmt, fmt_naive
from .generator import to_json

EMAIL = "activity.email"
THREAD = "activity.email_thread"
LEAD = "lead"

FILTERS = ("object_type", "action", "object_id", "lead_id", "user_id", "request_id")

# Close's documented list of supported combinations (date_updated__* may be added to any).
COMBINATIONS = frozenset(
    frozenset(combo)
    for combo in (
        (),
        ("object_type", "object_id"),
        ("object_type", "action"),
        ("object_id", "action"),
        ("lead_id", "object_type"),
        ("lead_id", "object_type", "action"),
        ("lead_id", "user_id", "object_type"),
        ("lead_id", "user_id", "object_type", "action"),
        ("lead_id", "user_id"),
        ("user_id", "object_id"),
        ("user_id", "object_id", "action"),
        ("user_id", "object_type"),
        ("user_id", "object_type", "action"),
        ("lead_id",),
        ("user_id",),
        ("request_id",),
    )
)


@dataclass
class Actor:
    """Who and what caused a mutation; copied into its events."""

    request_id: str
    user_id: str | None = None
    api_key_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def event_body(
    organization_id: str,
    actor: Actor,
    object_type: str,
    object_id: str,
    lead_id: str | None,
    action: str,
    data: dict | None,
    previous_data: dict | None,
    changed_fields: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> str:
    """The stored JSON text of an event, without its id and timestamps (added when rendered)."""
    return to_json(
        {
            "organization_id": organization_id,
            "user_id": actor.user_id,
            "request_id": actor.request_id,
            "api_key_id": actor.api_key_id,
            "oauth_client_id": None,
            "oauth_scope": None,
            "object_type": object_type,
            "object_id": object_id,
            "lead_id": lead_id,
            "action": action,
            "changed_fields": changed_fields or [],
            "meta": {**actor.meta, **(meta or {})},
            "data": data,
            "previous_data": previous_data,
        }
    )


def render(
    event_id: str, date_created_us: int, date_updated_us: int, body: str, naive: bool
) -> str:
    """The event as the API returns it (JSON text), splicing id and timestamps into `body`."""
    show = fmt_naive if naive else fmt
    head = json.dumps(
        {
            "id": event_id,
            "date_created": show(date_created_us),
            "date_updated": show(date_updated_us),
        },
        separators=(",", ":"),
    )
    return head[:-1] + "," + body[1:]


def combination_error(keys: set[str]) -> str | None:
    """The 400 message for an unsupported filter combination, or None when it is supported."""
    if frozenset(keys) in COMBINATIONS:
        return None
    names = ", ".join(sorted(keys))
    return (
        f"The combination of filters ({names}) is not supported. Supported combinations are "
        "listed at https://developer.close.com/api/resources/events/list."
    )


def encode_cursor(newer: bool, date_updated_us: int, seq: int) -> str:
    """An opaque cursor pointing before (older) or after (newer) the given row."""
    raw = json.dumps([1 if newer else 0, date_updated_us, seq]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[bool, int, int]:
    """(newer, date_updated_us, seq) from a cursor; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        newer, date_updated_us, seq = json.loads(raw)
        return bool(newer), int(date_updated_us), int(seq)
    except (ValueError, TypeError) as exc:
        raise ValueError(cursor) from exc
