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


def extras(
    dialect: str, dataset: str, existing: set[str], staging: tuple[str, set[str]] | None = None
) -> list[str]:
    """Key, index and comment statements for `dataset` in `dialect` (quoted identifiers).

    Args:
        staging: the staging dataset dlt merges from and its tables; MySQL/MariaDB index
            them too (see `_mysql_staging`).
    """
    if dialect == "postgres":
        return _postgres(f'"{dataset}"', existing)
    if dialect == "mysql":
        statements = _mysql(f"`{dataset}`", existing)
        if staging:
            statements += _mysql_staging(f"`{staging[0]}`", staging[1])
        return statements
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


def _mysql_staging(dataset: str, existing: set[str]) -> list[str]:
    """Indexes on the merge keys of dlt's staging tables, which dlt keeps between loads.

    dlt's merge deletes the rows being replaced with a correlated `EXISTS` on the staging
    table; MariaDB runs it once per stored row, so without an index a load's merge grew with
    the table (1,500 emails in 4 chunks: 2, 4, 8 s per chunk load).
    """
    keys = {"emails": "id", **{f"emails__{key}": "email_id" for key in CHILD_VIEWS}}
    return [
        f"CREATE INDEX IF NOT EXISTS {table}_{column}_idx ON {dataset}.{table}"
        f" ({column}({INDEX_PREFIX}))"
        for table, column in keys.items()
        if table in existing
    ]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
