"""What the warehouse adds to the loaded tables: `emails.id` as primary key, indexes for the
joins by `email_id`, and the descriptions as comments, per engine where it has them.

dlt declares no primary-key constraint (its staging copy may hold two versions of an email),
so the key is added once to the merged table, which never does. The statements are
engine-specific by nature (catalog checks, comment syntax); this module is the only place
that spells them, for the engines tested live: PostgreSQL (key, indexes, comments on
tables, views and columns), MySQL/MariaDB (indexes on a 64-character prefix, as dlt creates
text columns as TEXT, and the table comment of `emails`; views take no comments there) and
DuckDB (none: it has no secondary-index benefit for these joins and loads stay faster).
"""

from sources.close.columns import CHILD_COLUMNS, EMAIL_COLUMNS

from .views import ANALYST_VIEWS, CHILD_VIEWS, EMAILS_DESCRIPTION

INDEX_PREFIX = 64  # characters of a TEXT key MySQL indexes (ids are about 40)


def extras(dialect: str, dataset: str, existing: set[str]) -> list[str]:
    """Key, index and comment statements for `dataset` in `dialect` (quoted identifiers)."""
    if dialect == "postgres":
        return _postgres(f'"{dataset}"', existing)
    if dialect == "mysql":
        return _mysql(f"`{dataset}`", existing)
    return []


def _postgres(dataset: str, existing: set[str]) -> list[str]:
    statements = []
    if "emails" in existing:
        statements.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'p'"
            f" AND conrelid = {_quote(dataset + '.emails')}::regclass) THEN"
            f" ALTER TABLE {dataset}.emails ADD PRIMARY KEY (id); END IF; END $$"
        )
    for key, (view, description) in CHILD_VIEWS.items():
        table = f"emails__{key}"
        if table in existing:
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {table}_email_id_idx ON {dataset}.{table} (email_id)"
            )
        statements.append(f"COMMENT ON VIEW {dataset}.{view} IS {_quote(description)}")
        for column, (_type, text) in CHILD_COLUMNS[key].items():
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


def _mysql(dataset: str, existing: set[str]) -> list[str]:
    """MariaDB's `CREATE INDEX IF NOT EXISTS` (MySQL 8 lacks it: it would need a catalog
    check first). A unique index stands in for the primary key, which a TEXT column cannot be
    without a prefix either."""
    statements = []
    if "emails" in existing:
        statements.append(
            f"CREATE UNIQUE INDEX IF NOT EXISTS emails_id_idx ON {dataset}.emails"
            f" (id({INDEX_PREFIX}))"
        )
        statements.append(f"ALTER TABLE {dataset}.emails COMMENT = {_quote(EMAILS_DESCRIPTION)}")
    for key in CHILD_VIEWS:
        table = f"emails__{key}"
        if table in existing:
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {table}_email_id_idx ON {dataset}.{table}"
                f" (email_id({INDEX_PREFIX}))"
            )
    return statements


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
