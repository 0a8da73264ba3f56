"""`make demo`: the whole flow on a laptop, no API key, no network.

Starts the Close emulator as a separate process with a realistic dataset, runs the nightly
`sync` (the real command line) into its own DuckDB file (or PostgreSQL), shows the run
summary and an analyst query, changes emails in the emulator (opens, replies, a deleted
email, a deleted thread, late-arriving mail), runs `sync` again to show the incremental run,
prints `status`, and stops the emulator.
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from close_emulator.testing import EmulatorProcess

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / ".demo"
PIPELINE = "close_emails_demo"
DEMO_KEY = "api_demo_key"
PG_DEFAULT = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"


def run_cli(*args: str, env: dict[str, str], destination: str, dataset: str, cwd: Path) -> None:
    command = [sys.executable, "-m", "pipelines.close_emails", *args]
    command += ["--pipeline-name", PIPELINE, "--destination", destination, "--dataset", dataset]
    print(f"\n$ python -m pipelines.close_emails {' '.join(args)}", flush=True)
    subprocess.run(command, env=env, cwd=cwd, check=True)


def analyst_query(env: dict[str, str], destination: str, dataset: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.update(env)
    from pipelines.runner import make_pipeline

    pipeline = make_pipeline(PIPELINE, destination, dataset)
    sql = f"""
        SELECT user_id, SUM(sent) AS sent, SUM(opened) AS opened, SUM(replied) AS replied,
               ROUND(CAST(SUM(replied) AS NUMERIC) / NULLIF(SUM(sent), 0), 3) AS reply_rate
        FROM {dataset}.email_daily_activity
        WHERE user_id IS NOT NULL
        GROUP BY user_id ORDER BY sent DESC LIMIT 5
    """
    print("\nTop senders (email_daily_activity):")
    print(f"{'user_id':<52} {'sent':>6} {'opened':>7} {'replied':>8} {'reply_rate':>10}")
    with pipeline.sql_client() as client:
        for user_id, sent, opened, replied, rate in client.execute_sql(sql):
            print(f"{user_id:<52} {sent:>6} {opened:>7} {replied:>8} {float(rate or 0):>10.3f}")


def change_some_emails(emulator: EmulatorProcess) -> None:
    admin = emulator.admin
    emails = [
        e for e in admin.all_emails() if e["status"] == "sent" and e["direction"] == "outgoing"
    ]
    for email in emails[:25]:
        admin.record_open(email["id"])
    for email in emails[25:35]:
        admin.receive_reply(email["id"])
    admin.delete_email(emails[40]["id"])
    admin.delete_thread(emails[41]["thread_id"])
    admin.add_late_email(days_old=45, lead_id=emails[42]["lead_id"])
    print(
        "\nChanged in Close: 25 opens, 10 replies, 1 email and 1 thread deleted,"
        " 1 email synced in late (45 days old)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--destination", choices=("duckdb", "postgres"), default="duckdb")
    parser.add_argument("--emails", type=int, default=20000)
    parser.add_argument("--workdir", type=Path, default=DEMO_DIR, help="wiped and reused")
    parser.add_argument("--dataset", help="default: close (DuckDB), close_demo (PostgreSQL)")
    args = parser.parse_args()

    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    dataset = args.dataset or ("close" if args.destination == "duckdb" else "close_demo")
    print(f"Starting the Close emulator with {args.emails} emails ...", flush=True)
    with EmulatorProcess(["--emails", str(args.emails), "--seed", "1"]) as emulator:
        env = dict(
            os.environ,
            SOURCES__CLOSE__API_KEY=DEMO_KEY,
            SOURCES__CLOSE__BASE_URL=emulator.base_url,
            DESTINATION__DUCKDB__CREDENTIALS=str(workdir / f"{PIPELINE}.duckdb"),
            DLT_DATA_DIR=str(workdir / "dlt"),
            DLT_PROJECT_DIR=str(ROOT),
            PYTHONPATH=str(ROOT),
        )
        env.setdefault("DESTINATION__POSTGRES__CREDENTIALS", PG_DEFAULT)
        if args.destination == "postgres":
            _drop_postgres_dataset(env["DESTINATION__POSTGRES__CREDENTIALS"], dataset)
        run_cli("sync", env=env, destination=args.destination, dataset=dataset, cwd=workdir)
        analyst_query(env, args.destination, dataset)
        change_some_emails(emulator)
        run_cli("sync", env=env, destination=args.destination, dataset=dataset, cwd=workdir)
        run_cli("status", env=env, destination=args.destination, dataset=dataset, cwd=workdir)
    print("\nEmulator stopped. The demo's data is in .demo/ (make clean removes it).")


def _drop_postgres_dataset(dsn: str, dataset: str) -> None:
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
        cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')


if __name__ == "__main__":
    main()
