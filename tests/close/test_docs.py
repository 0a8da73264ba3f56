"""The data dictionary (docs/tables.md) is fresh and lists every contract column."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLES_MD = ROOT / "docs" / "tables.md"
# The outside contract, when it is checked out next to the repository (not part of it).
CONTRACT_MD = Path(
    os.environ.get("CLOSE_CONTRACT_MD", ROOT.parent / "shared" / "reference" / "contract.md")
)

# The columns the contract ("Tables for analysts") promises, table by table.
CONTRACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "emails": (
        "id", "lead_id", "contact_id", "user_id", "organization_id", "direction", "status",
        "subject", "sender", "body_text", "body_html", "date_created", "date_updated",
        "date_sent", "date_scheduled", "activity_at", "thread_id", "in_reply_to_id",
        "has_reply", "template_id", "sequence_id", "sequence_name", "sequence_subscription_id",
        "bulk_email_action_id", "created_by", "updated_by", "envelope__message_id",
        "envelope__in_reply_to", "envelope__subject", "envelope__date", "envelope__date_utc",
    ),
    "email_recipients": ("email_id", "role", "position", "email", "name"),
    "email_attachments": ("email_id", "position", "filename", "content_type", "size", "url"),
    "email_opens": ("email_id", "position", "opened_at", "opened_by", "ip_address", "user_agent"),
    "email_send_attempts": ("email_id", "position", "date", "error_class", "error_message"),
    "email_message_ids": ("email_id", "kind", "position", "value"),
    # "Analyst views"
    "email_threads": (
        "thread_id", "lead_id", "message_count", "incoming_count", "outgoing_count",
        "first_activity_at", "last_activity_at", "first_outgoing_at", "first_reply_at",
        "replied", "time_to_first_reply",
    ),
    "email_daily_activity": ("user_id", "day", "sent", "received", "opened", "replied"),
    "email_sequence_performance": (
        "sequence_id", "sequence_name", "emails_sent", "emails_opened", "emails_replied",
        "open_rate", "reply_rate",
    ),
}  # fmt: skip

# The contract's types: timestamps with time zone, booleans, integer sizes and positions.
CONTRACT_TYPES: dict[tuple[str, str], str] = {
    **{("emails", c): "timestamp with time zone"
       for c in ("date_created", "date_updated", "date_sent", "date_scheduled", "activity_at",
                 "envelope__date_utc")},
    ("emails", "has_reply"): "boolean",
    ("email_recipients", "position"): "bigint",
    ("email_attachments", "position"): "bigint",
    ("email_attachments", "size"): "bigint",
    ("email_opens", "position"): "bigint",
    ("email_opens", "opened_at"): "timestamp with time zone",
    ("email_send_attempts", "position"): "bigint",
    ("email_send_attempts", "date"): "timestamp with time zone",
    ("email_message_ids", "position"): "bigint",
    ("email_threads", "message_count"): "bigint",
    ("email_threads", "incoming_count"): "bigint",
    ("email_threads", "outgoing_count"): "bigint",
    ("email_threads", "first_activity_at"): "timestamp with time zone",
    ("email_threads", "last_activity_at"): "timestamp with time zone",
    ("email_threads", "first_outgoing_at"): "timestamp with time zone",
    ("email_threads", "first_reply_at"): "timestamp with time zone",
    ("email_threads", "replied"): "boolean",
    ("email_threads", "time_to_first_reply"): "interval",
    ("email_daily_activity", "day"): "date",
    **{("email_daily_activity", c): "bigint" for c in ("sent", "received", "opened", "replied")},
    **{("email_sequence_performance", c): "bigint"
       for c in ("emails_sent", "emails_opened", "emails_replied")},
    ("email_sequence_performance", "open_rate"): "double precision",
    ("email_sequence_performance", "reply_rate"): "double precision",
}  # fmt: skip


def documented_columns() -> dict[str, dict[str, str]]:
    """table -> column -> type, from the `## `name`` sections of docs/tables.md."""
    tables: dict[str, dict[str, str]] = {}
    current = None
    for line in TABLES_MD.read_text().splitlines():
        heading = re.match(r"^## `(\w+)`", line)
        if heading:
            current = tables.setdefault(heading.group(1), {})
            continue
        row = re.match(r"^\| `(\w+)` \| ([^|]+) \|", line)
        if row and current is not None:
            current[row.group(1)] = row.group(2).strip()
    return tables


def test_generated_docs_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_docs.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_docs_list_every_contract_column_with_its_type() -> None:
    documented = documented_columns()
    missing = {
        table: [c for c in columns if c not in documented.get(table, {})]
        for table, columns in CONTRACT_COLUMNS.items()
    }
    assert not any(missing.values()), {t: c for t, c in missing.items() if c}
    wrong = {
        key: documented[key[0]][key[1]]
        for key, sql_type in CONTRACT_TYPES.items()
        if documented[key[0]][key[1]] != sql_type
    }
    assert not wrong, wrong


def test_contract_column_list_matches_the_contract() -> None:
    """CONTRACT_COLUMNS above is the contract's list, no more, no less (when it is at hand)."""
    if not CONTRACT_MD.exists():
        pytest.skip(f"contract not found at {CONTRACT_MD} (set CLOSE_CONTRACT_MD)")
    text = CONTRACT_MD.read_text()
    tables = text.split("## Tables for analysts", 1)[1]
    tables, views = tables.split("## Analyst views", 1)
    emails_part = tables.split("`emails`:", 1)[1].split("`email_recipients`:", 1)[0]
    emails_part = emails_part.split("At least:", 1)[1]
    listed = {"emails": backticked(emails_part)}
    for table in CONTRACT_COLUMNS:
        if table == "emails":
            continue
        source = views if table in ("email_threads", "email_daily_activity",
                                    "email_sequence_performance") else tables  # fmt: skip
        paragraph = source.split(f"`{table}`:", 1)[1].split("\n\n", 1)[0]
        listed[table] = backticked(paragraph)
    for table, columns in CONTRACT_COLUMNS.items():
        # the contract also quotes values (`from`, `sent`, ...) and other names in backticks
        assert set(columns) <= listed[table], (table, set(columns) - listed[table])
    # every backticked word the contract lists for these tables that is a column here
    documented = documented_columns()
    for table, names in listed.items():
        extra = {n for n in names if n in documented.get(table, {})} - set(CONTRACT_COLUMNS[table])
        assert not extra, (table, extra)


def backticked(text: str) -> set[str]:
    return set(re.findall(r"`(\w+)`", text))


def test_readme_queries_are_the_tested_ones_of_docs_queries() -> None:
    """The README shows copies of example queries; each must be one that docs/queries.md
    holds (and test_views.py runs with known answers)."""
    sql_block = re.compile(r"```sql\n(.*?)```", re.S)
    readme_queries = sql_block.findall((ROOT / "README.md").read_text())
    tested = sql_block.findall((ROOT / "docs" / "queries.md").read_text())
    assert readme_queries, "the README shows no example query"
    assert all(query in tested for query in readme_queries)
