"""The analyst-facing SQL layer: contract views over the tables dlt loads.

The source loads the child lists into tables `emails__<list>` (which also hold the merge's
`_slot`, `_version` and `_deleted` columns); analysts get their contract columns as
`email_recipients`, `email_attachments`, … plus three analyst views. Everything here is plain
SQL that runs unchanged on DuckDB and PostgreSQL. Views are dropped and re-created after
every load, in one transaction. A base table not created yet (before the first load that
had any email) is replaced by an empty, typed stand-in, so every view exists, with its
column types, from the first load on.
"""

from typing import Any

from .columns import CHILD_TABLES, EMAIL_COLUMNS, EMAILS_DESCRIPTION, ColumnSpec

SQL_TYPES = {
    "duckdb": {"text": "VARCHAR", "bigint": "BIGINT", "bool": "BOOLEAN", "json": "JSON",
               "timestamp": "TIMESTAMP WITH TIME ZONE"},
    "postgres": {"text": "VARCHAR", "bigint": "BIGINT", "bool": "BOOLEAN", "json": "JSONB",
                 "timestamp": "TIMESTAMP WITH TIME ZONE"},
}  # fmt: skip

# time_to_first_reply subtracts UTC wall-clock times: DuckDB subtracts two TIMESTAMPTZ in the
# session's time zone (calendar days), so a DST change in between would add or drop an hour.
EMAIL_THREADS_SQL = """
WITH e AS (
    SELECT id, thread_id, lead_id, direction, activity_at FROM {emails}
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
    (r.first_reply_at AT TIME ZONE 'UTC') - (t.first_outgoing_at AT TIME ZONE 'UTC')
        AS time_to_first_reply
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
    FROM {emails} e
    LEFT JOIN (SELECT DISTINCT email_id FROM {opens}) o ON o.email_id = e.id
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
    FROM {emails} e
    LEFT JOIN (SELECT DISTINCT email_id FROM {opens}) o ON o.email_id = e.id
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
    """Every view this module maintains, child-table views first."""
    return [view for view, _spec, _description in CHILD_TABLES.values()] + list(ANALYST_VIEWS)


def refresh_views(sql_client: Any, dialect: str) -> None:
    """(Re)creates the child-table and analyst views and, on PostgreSQL, indexes and comments.

    Args:
        sql_client: an open dlt sql client of the pipeline's destination and dataset.
        dialect: `duckdb` or `postgres`.
    """
    dataset = sql_client.fully_qualified_dataset_name()
    existing = _existing_tables(sql_client)

    def source(table: str, spec: ColumnSpec) -> str:
        if table in existing:
            return f"{dataset}.{table}"
        return _empty_relation(spec, dialect)

    statements = [
        f"DROP VIEW IF EXISTS {dataset}.{view} CASCADE" for view in reversed(view_names())
    ]
    for key, (view, spec, _description) in CHILD_TABLES.items():
        columns = ", ".join(f'"{name}"' for name in spec)
        relation = source(f"emails__{key}", spec)
        statements.append(f"CREATE VIEW {dataset}.{view} AS SELECT {columns} FROM {relation} c")
    relations = {"emails": source("emails", EMAIL_COLUMNS)}
    relations["opens"] = f"{dataset}.email_opens"
    for view, (sql, _description, _columns) in ANALYST_VIEWS.items():
        statements.append(f"CREATE VIEW {dataset}.{view} AS {sql.format(**relations)}")
    if dialect == "postgres":
        statements.extend(_postgres_extras(dataset, existing))
    sql_client.execute_many(statements)


def _existing_tables(sql_client: Any) -> set[str]:
    dataset = sql_client.dataset_name
    rows = sql_client.execute_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        " AND table_type = 'BASE TABLE'",
        dataset,
    )
    return {row[0] for row in rows or []}


def _empty_relation(spec: ColumnSpec, dialect: str) -> str:
    """A typed, empty stand-in for a table that does not exist yet."""
    types = SQL_TYPES[dialect]
    columns = ", ".join(f'CAST(NULL AS {types[t]}) AS "{name}"' for name, (t, _d) in spec.items())
    return f"(SELECT {columns} WHERE 1 = 0)"


def _postgres_extras(dataset: str, existing: set[str]) -> list[str]:
    """`emails.id` as primary key, indexes for joins by `email_id`, descriptions as comments.

    dlt declares no primary-key constraint (its staging copy may hold two versions of an
    email), so the key is added once to the merged table, which never does.
    """
    statements = []
    if "emails" in existing:
        statements.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'p'"
            f" AND conrelid = '{dataset}.emails'::regclass) THEN"
            f" ALTER TABLE {dataset}.emails ADD PRIMARY KEY (id); END IF; END $$"
        )
    for key, (view, spec, description) in CHILD_TABLES.items():
        table = f"emails__{key}"
        if table in existing:
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {table}_email_id_idx ON {dataset}.{table} (email_id)"
            )
        statements.append(f"COMMENT ON VIEW {dataset}.{view} IS {_quote(description)}")
        for column, (_type, text) in spec.items():
            statements.append(f'COMMENT ON COLUMN {dataset}.{view}."{column}" IS {_quote(text)}')
    for view, (_sql, description, columns) in ANALYST_VIEWS.items():
        statements.append(f"COMMENT ON VIEW {dataset}.{view} IS {_quote(description)}")
        for column, (_type, text) in columns.items():
            statements.append(f'COMMENT ON COLUMN {dataset}.{view}."{column}" IS {_quote(text)}')
    if "emails" in existing:
        statements.append(f"COMMENT ON TABLE {dataset}.emails IS {_quote(EMAILS_DESCRIPTION)}")
        for column, (_type, text) in EMAIL_COLUMNS.items():
            statements.append(f'COMMENT ON COLUMN {dataset}.emails."{column}" IS {_quote(text)}')
    return statements


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
