"""Shaping Close emails into `emails` rows with their child lists, and deletion markers."""

import email.utils
from datetime import datetime
from typing import Any

import dlt
from dlt.common.schema.typing import TWriteDispositionConfig

from .columns import CHILD_TABLES, DELETED_COLUMN, EMAIL_COLUMNS, to_hints
from .settings import BODY_FIELDS
from .timestamps import parse_rfc2822, parse_timestamp

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


# The hints every resource writing `emails` shares (see `_emails_resource` in `__init__`).
MERGE: TWriteDispositionConfig = {"disposition": "merge", "strategy": "delete-insert"}
EMAIL_HINTS = {
    **to_hints(EMAIL_COLUMNS),
    "date_updated": {**to_hints(EMAIL_COLUMNS)["date_updated"], "dedup_sort": "desc"},
    DELETED_COLUMN: {
        "name": DELETED_COLUMN,
        "data_type": "bool",
        "nullable": True,
        "hard_delete": True,
        "description": "Deletion marker used by the merge; never true in a stored row",
    },
}
NESTED_HINTS = {
    key: dlt.mark.make_nested_hints(columns=list(to_hints(spec).values()))
    for key, (_view, spec, _description) in CHILD_TABLES.items()
}
