"""The contract views, written once in PostgreSQL's SQL and rendered per engine by sqlglot.

The source loads the child lists into tables `emails__<list>` (which also hold the merge's
`_slot`, `_version` and `_deleted` columns); analysts get their contract columns as
`email_recipients`, `email_attachments`, … plus three analyst views. The SQL below names
its relations bare (`emails`, `opens`); `view_statements` qualifies them with the dataset,
or replaces a base table not created yet (before the first load that had, say, any
attachment) with a typed, empty stand-in, so every view exists with its column types from
the first load on. `ELAPSED(a, b)` is the time from a to b (`dialects.py`).
"""

from sqlglot import exp

from sources.close.columns import CHILD_COLUMNS, EMAIL_COLUMNS, ColumnSpec

from .dialects import empty_relation, render

EMAILS_DESCRIPTION = "One row per email activity that exists in Close now"

# child list key (table `emails__<key>`) -> (contract view, its description)
CHILD_VIEWS: dict[str, tuple[str, str]] = {
    "recipients": (
        "email_recipients",
        "One row per address on an email, from the envelope (with display names) or, when"
        " there is none, from the top-level sender/to/cc/bcc",
    ),
    "attachments": ("email_attachments", "One row per attachment"),
    "opens": ("email_opens", "One row per recorded open of an email"),
    "send_attempts": ("email_send_attempts", "One row per send attempt"),
    "message_ids": (
        "email_message_ids",
        "One row per Message-ID of an email and per entry of its References header",
    ),
}

EMAIL_THREADS_SQL = """
WITH e AS (
    SELECT id, thread_id, lead_id, direction, activity_at FROM emails
    WHERE thread_id IS NOT NULL AND activity_at IS NOT NULL
), totals AS (
    SELECT thread_id,
        COUNT(*) AS message_count,
        SUM(CASE WHEN direction = 'incoming' THEN 1 ELSE 0 END) AS incoming_count,
        SUM(CASE WHEN direction = 'outgoing' THEN 1 ELSE 0 END) AS outgoing_count,
        MIN(activity_at) AS first_activity_at,
        MAX(activity_at) AS last_activity_at,
        MIN(CASE WHEN direction = 'outgoing' THEN activity_at END) AS first_outgoing_at
    FROM e GROUP BY thread_id
), first_email AS (
    SELECT thread_id, lead_id FROM (
        SELECT thread_id, lead_id,
            ROW_NUMBER() OVER (PARTITION BY thread_id ORDER BY activity_at, id) AS n
        FROM e
    ) ranked WHERE n = 1
), first_reply AS (
    SELECT t.thread_id, MIN(e.activity_at) AS first_reply_at
    FROM totals t JOIN e ON e.thread_id = t.thread_id
        AND e.direction = 'incoming' AND e.activity_at > t.first_outgoing_at
    GROUP BY t.thread_id
)
SELECT t.thread_id, f.lead_id,
    CAST(t.message_count AS BIGINT) AS message_count,
    CAST(t.incoming_count AS BIGINT) AS incoming_count,
    CAST(t.outgoing_count AS BIGINT) AS outgoing_count,
    t.first_activity_at, t.last_activity_at, t.first_outgoing_at, r.first_reply_at,
    r.first_reply_at IS NOT NULL AS replied,
    ELAPSED(t.first_outgoing_at, r.first_reply_at) AS time_to_first_reply
FROM totals t
JOIN first_email f ON f.thread_id = t.thread_id
LEFT JOIN first_reply r ON r.thread_id = t.thread_id
"""

EMAIL_DAILY_ACTIVITY_SQL = """
WITH e AS (
    SELECT e.user_id, CAST(e.activity_at AT TIME ZONE 'UTC' AS DATE) AS day,
        e.direction = 'outgoing' AND e.status = 'sent' AS is_sent,
        e.direction = 'incoming' AS is_received,
        o.email_id IS NOT NULL AS is_opened,
        COALESCE(e.has_reply, FALSE) AS is_replied
    FROM emails e
    LEFT JOIN (SELECT DISTINCT email_id FROM opens) o ON o.email_id = e.id
    WHERE e.activity_at IS NOT NULL
)
SELECT user_id, day,
    CAST(SUM(CASE WHEN is_sent THEN 1 ELSE 0 END) AS BIGINT) AS sent,
    CAST(SUM(CASE WHEN is_received THEN 1 ELSE 0 END) AS BIGINT) AS received,
    CAST(SUM(CASE WHEN is_sent AND is_opened THEN 1 ELSE 0 END) AS BIGINT) AS opened,
    CAST(SUM(CASE WHEN is_sent AND is_replied THEN 1 ELSE 0 END) AS BIGINT) AS replied
FROM e GROUP BY user_id, day
"""

EMAIL_SEQUENCE_PERFORMANCE_SQL = """
WITH s AS (
    SELECT e.sequence_id, MAX(e.sequence_name) AS sequence_name,
        CAST(SUM(CASE WHEN e.status = 'sent' THEN 1 ELSE 0 END) AS BIGINT) AS emails_sent,
        CAST(SUM(CASE WHEN e.status = 'sent' AND o.email_id IS NOT NULL THEN 1 ELSE 0 END)
            AS BIGINT) AS emails_opened,
        CAST(SUM(CASE WHEN e.status = 'sent' AND e.has_reply THEN 1 ELSE 0 END)
            AS BIGINT) AS emails_replied
    FROM emails e
    LEFT JOIN (SELECT DISTINCT email_id FROM opens) o ON o.email_id = e.id
    WHERE e.sequence_id IS NOT NULL
    GROUP BY e.sequence_id
)
SELECT sequence_id, sequence_name, emails_sent, emails_opened, emails_replied,
    CASE WHEN emails_sent = 0 THEN NULL
        ELSE CAST(emails_opened AS DOUBLE PRECISION) / emails_sent END AS open_rate,
    CASE WHEN emails_sent = 0 THEN NULL
        ELSE CAST(emails_replied AS DOUBLE PRECISION) / emails_sent END AS reply_rate
FROM s
"""

ANALYST_VIEWS = {
    "email_threads": (
        EMAIL_THREADS_SQL,
        "One row per email thread (emails with an activity_at), ordered by activity_at then id",
        {
            "thread_id": ("text", "The thread"),
            "lead_id": ("text", "Lead of the thread's earliest email"),
            "message_count": ("bigint", "Emails in the thread"),
            "incoming_count": ("bigint", "Incoming emails in the thread (any status)"),
            "outgoing_count": ("bigint", "Outgoing emails in the thread (any status)"),
            "first_activity_at": ("timestamp", "Earliest activity_at in the thread"),
            "last_activity_at": ("timestamp", "Latest activity_at in the thread"),
            "first_outgoing_at": ("timestamp", "activity_at of the earliest outgoing email"),
            "first_reply_at": (
                "timestamp",
                "Earliest incoming email strictly after first_outgoing_at",
            ),
            "replied": ("bool", "Whether first_reply_at is not null"),
            "time_to_first_reply": ("interval", "first_reply_at - first_outgoing_at"),
        },
    ),
    "email_daily_activity": (
        EMAIL_DAILY_ACTIVITY_SQL,
        "One row per user and UTC day of activity_at that has any email",
        {
            "user_id": ("text", "The user (NULL is a group of its own)"),
            "day": ("date", "UTC date of activity_at"),
            "sent": ("bigint", "Outgoing emails with status sent"),
            "received": ("bigint", "Incoming emails"),
            "opened": ("bigint", "Sent emails with at least one open"),
            "replied": ("bigint", "Sent emails with has_reply"),
        },
    ),
    "email_sequence_performance": (
        EMAIL_SEQUENCE_PERFORMANCE_SQL,
        "One row per sequence: emails sent, opened and replied to, with rates",
        {
            "sequence_id": ("text", "The sequence"),
            "sequence_name": ("text", "A non-null name its emails carry"),
            "emails_sent": ("bigint", "Emails of the sequence with status sent"),
            "emails_opened": ("bigint", "Of those, with at least one open"),
            "emails_replied": ("bigint", "Of those, with has_reply"),
            "open_rate": ("double", "emails_opened / emails_sent (NULL when none were sent)"),
            "reply_rate": ("double", "emails_replied / emails_sent (NULL when none were sent)"),
        },
    ),
}


def view_names() -> list[str]:
    """Every view this package maintains, child-table views first."""
    return [view for view, _description in CHILD_VIEWS.values()] + list(ANALYST_VIEWS)


def view_statements(dataset: str, existing: set[str], dialect: str) -> list[str]:
    """Statements that drop and re-create every view of `dataset`, in `dialect`.

    Args:
        dataset: the dataset (schema; a database on MySQL/MariaDB) as the engine names it.
        existing: base tables of the dataset that exist now.
        dialect: a sqlglot dialect name.
    """

    def table(name: str) -> exp.Expression:
        return exp.table_(name, db=dataset, quoted=True)

    def source(name: str, spec: ColumnSpec) -> exp.Expression:
        if name in existing:
            return table(name)
        return empty_relation({column: t for column, (t, _d) in spec.items()}, dialect)

    statements = [
        exp.Drop(tables=[table(view)], kind="VIEW", exists=True, cascade=True).sql(dialect)
        for view in reversed(view_names())
    ]
    for key, (view, _description) in CHILD_VIEWS.items():
        select = exp.select(*(exp.column(name, quoted=True) for name in CHILD_COLUMNS[key]))
        relations = {"c": source(f"emails__{key}", CHILD_COLUMNS[key])}
        statements.append(
            _create_view(table(view), select.from_("c").sql("postgres"), dialect, relations)
        )
    relations = {"emails": source("emails", EMAIL_COLUMNS), "opens": table("email_opens")}
    for view, (sql, _description, _columns) in ANALYST_VIEWS.items():
        statements.append(_create_view(table(view), sql, dialect, relations))
    return statements


def _create_view(
    name: exp.Expression, sql: str, dialect: str, relations: dict[str, exp.Expression]
) -> str:
    query = render(sql, dialect, relations)
    return exp.Create(this=name, kind="VIEW", expression=query).sql(dialect)
