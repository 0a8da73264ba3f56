"""The tables the source writes: column types and one-line meanings.

This is the single place where a loaded column's type and description live. The resources
take their dlt column hints from here; the warehouse layer (`warehouse/`) builds its views,
comments and the data dictionary (`docs/tables.md`) from the resulting dlt schema.
"""

from dlt.common.schema.typing import TColumnSchema, TTableSchemaColumns

# column name -> (dlt data type, description)
ColumnSpec = dict[str, tuple[str, str]]

EMAIL_COLUMNS: ColumnSpec = {
    "id": ("text", "Close activity id of the email (`acti_…`); unique"),
    "organization_id": ("text", "Close organization that owns the email"),
    "lead_id": (
        "text",
        "Lead the email belongs to (changes when leads are merged or it is reassigned)",
    ),
    "contact_id": ("text", "Contact the email was exchanged with"),
    "user_id": ("text", "Close user whose mailbox or account the email belongs to"),
    "user_name": ("text", "Display name of `user_id`"),
    "direction": ("text", "`incoming` (from the lead) or `outgoing` (to the lead)"),
    "status": ("text", "`inbox`, `draft`, `scheduled`, `outbox`, `sent` or `error`"),
    "subject": ("text", "Subject line"),
    "sender": ("text", "Sender as Close shows it, `Name <address>`"),
    "to": ("json", "Plain `to` addresses as Close lists them (see email_recipients for names)"),
    "cc": ("json", "Plain `cc` addresses"),
    "bcc": ("json", "Plain `bcc` addresses"),
    "body_text": ("text", "Plain-text body (NULL when bodies are excluded)"),
    "body_html": ("text", "HTML body (NULL when bodies are excluded)"),
    "body_preview": (
        "text",
        "Short plain-text preview of the body (NULL when bodies are excluded)",
    ),
    "body_text_quoted": ("json", "Body split into visible and quoted parts, `[{expand, text}]`"),
    "body_html_quoted": (
        "json",
        "HTML body split into visible and quoted parts, `[{expand, html}]`",
    ),
    "date_created": ("timestamp", "When the email was created in, or synced into, Close"),
    "date_updated": ("timestamp", "When Close last changed the email"),
    "date_sent": ("timestamp", "When the email was sent (NULL for drafts and scheduled mail)"),
    "date_scheduled": ("timestamp", "When a scheduled email is due to be sent"),
    "activity_at": ("timestamp", "When the email happened (sent or received); NULL for drafts"),
    "thread_id": ("text", "Email thread (conversation) the email belongs to"),
    "in_reply_to_id": ("text", "Close id of the email this one replies to"),
    "has_reply": ("bool", "Whether a reply to this email has arrived"),
    "opens_summary": ("text", "Close's human-readable summary of opens, NULL when never opened"),
    "template_id": ("text", "Email template used, if any"),
    "template_name": ("text", "Name of the template"),
    "sequence_id": ("text", "Sequence (automated campaign) that sent the email, if any"),
    "sequence_name": ("text", "Name of the sequence"),
    "sequence_subscription_id": ("text", "Subscription of the contact to the sequence"),
    "followup_sequence_id": ("text", "Follow-up sequence attached to the email"),
    "followup_sequence_delay": ("bigint", "Delay of the follow-up sequence, in seconds"),
    "followup_sequence_add_cc_bcc": ("bool", "Whether follow-ups copy this email's cc and bcc"),
    "bulk_email_action_id": ("text", "Bulk email action that sent the email, if any"),
    "need_smtp_credentials": ("bool", "Whether sending waits for SMTP credentials"),
    "email_account_id": ("text", "Connected email account the email went through"),
    "send_as_id": ("text", "Send-as permission used, if any"),
    "users": ("json", "Ids of the users involved in the email"),
    "created_by": ("text", "User who created the email"),
    "created_by_name": ("text", "Display name of `created_by`"),
    "updated_by": ("text", "User who last changed the email"),
    "updated_by_name": ("text", "Display name of `updated_by`"),
    "envelope__message_id": ("text", "RFC 5322 Message-ID header"),
    "envelope__in_reply_to": ("text", "In-Reply-To header"),
    "envelope__subject": ("text", "Subject header as sent"),
    "envelope__date": ("text", "Date header, the raw RFC 2822 string"),
    "envelope__date_utc": (
        "timestamp",
        "Date header parsed to a timestamp (NULL when unparseable)",
    ),
    "envelope__is_autoreply": ("bool", "Whether the message was detected as an auto-reply"),
}

# Marker column: a row with `_deleted = true` removes the email and its child rows.
DELETED_COLUMN = "_deleted"

RECIPIENT_COLUMNS: ColumnSpec = {
    "email_id": ("text", "The email (`emails.id`)"),
    "role": ("text", "`from`, `sender`, `to`, `cc`, `bcc` or `reply_to`"),
    "position": ("bigint", "0-based position of the address within its role"),
    "email": ("text", "Email address"),
    "name": ("text", "Display name (NULL when empty)"),
}
ATTACHMENT_COLUMNS: ColumnSpec = {
    "email_id": ("text", "The email (`emails.id`)"),
    "position": ("bigint", "0-based position in the email's attachment list"),
    "filename": ("text", "File name"),
    "content_type": ("text", "MIME type"),
    "size": ("bigint", "Size in bytes"),
    "url": ("text", "Close file URL"),
    "thumbnail_url": ("text", "Thumbnail URL, for images"),
    "content_id": ("text", "Content-ID of an inline attachment"),
}
OPEN_COLUMNS: ColumnSpec = {
    "email_id": ("text", "The email (`emails.id`)"),
    "position": ("bigint", "0-based position in the email's list of opens"),
    "opened_at": ("timestamp", "When the email was opened"),
    "opened_by": ("text", "Who opened it, as Close reports it"),
    "ip_address": ("text", "IP address of the open"),
    "user_agent": ("text", "User agent of the open"),
}
SEND_ATTEMPT_COLUMNS: ColumnSpec = {
    "email_id": ("text", "The email (`emails.id`)"),
    "position": ("bigint", "0-based position in the list of send attempts"),
    "date": ("timestamp", "When the attempt was made"),
    "error_class": ("text", "Error class of a failed attempt"),
    "error_message": ("text", "Error message of a failed attempt"),
}
MESSAGE_ID_COLUMNS: ColumnSpec = {
    "email_id": ("text", "The email (`emails.id`)"),
    "kind": (
        "text",
        "`message_id` (the email's own Message-IDs) or `reference` (References header)",
    ),
    "position": ("bigint", "0-based position within its kind"),
    "value": ("text", "The Message-ID, e.g. `<abc@mail.example.com>`"),
}

# nested list key on an email row (table `emails__<key>`) -> its columns
CHILD_COLUMNS: dict[str, ColumnSpec] = {
    "recipients": RECIPIENT_COLUMNS,
    "attachments": ATTACHMENT_COLUMNS,
    "opens": OPEN_COLUMNS,
    "send_attempts": SEND_ATTEMPT_COLUMNS,
    "message_ids": MESSAGE_ID_COLUMNS,
}


def to_hints(spec: ColumnSpec) -> TTableSchemaColumns:
    """Turns a column spec into dlt column hints (nullable, typed, described)."""
    hints: TTableSchemaColumns = {}
    for name, (data_type, description) in spec.items():
        column: TColumnSchema = {
            "name": name,
            "data_type": data_type,  # type: ignore[typeddict-item]
            "nullable": name != "id",
            "description": description,
        }
        if data_type == "timestamp":
            column["timezone"] = True
        hints[name] = column
    return hints
