"""`make demo` (scripts/demo.py), on a small dataset, into DuckDB and PostgreSQL."""

import subprocess
import sys
import uuid
from pathlib import Path

from .conftest import POSTGRES_DSN

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_end_to_end(destination: str, tmp_path: Path) -> None:
    dataset = "close" if destination == "duckdb" else f"close_demo_{uuid.uuid4().hex[:8]}"
    command = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--destination", destination,
               "--emails", "400", "--workdir", str(tmp_path / "demo"), "--dataset", dataset]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_DSN}
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    finally:
        if destination == "postgres":
            import psycopg2

            with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
                cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.count("command: sync") == 2  # the first sync and the incremental one
    assert "Top senders (email_daily_activity):" in out
    assert "emails.deleted: " in out and "emails.deleted: 0\n" not in out.split("Changed in")[1]
    assert f"destination: {destination}" in out and "rows.emails: " in out
