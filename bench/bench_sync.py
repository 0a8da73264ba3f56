"""`make bench-sync`: how fast the sync loads the demo dataset, and what a nightly run costs.

Starts the emulator (a separate process, zero latency, rate limit off) with the demo's
20,000 emails, runs the real `sync` command into a fresh DuckDB file and reports wall time,
emails and rows per second, and the sync process's peak memory. Then changes N emails in
the emulator and runs `sync` again, reporting the API requests of the incremental run.
"""

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from close_emulator.testing import EmulatorProcess  # noqa: E402

WORK = ROOT / ".bench" / "sync"


def run_sync(env: dict[str, str], destination: str) -> tuple[float, str]:
    command = [sys.executable, "-m", "pipelines.close_emails", "sync", "--destination", destination]
    command += ["--pipeline-name", "close_bench", "--dataset", "close"]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=WORK, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"sync failed: {result.stderr.strip()}")
    return elapsed, result.stdout


def figure(summary: str, key: str) -> int:
    match = re.search(rf"^{re.escape(key)}: (\d+)", summary, re.MULTILINE)
    return int(match.group(1)) if match else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--emails", type=int, default=20000)
    parser.add_argument("--changed", type=int, default=1000)
    parser.add_argument("--destination", default="duckdb", choices=("duckdb", "postgres"))
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)

    started = time.perf_counter()
    with EmulatorProcess(["--emails", str(args.emails), "--seed", "1", "--rate", "0"]) as close:
        print(
            f"emulator: {args.emails} emails generated and served in {time.perf_counter() - started:.1f} s"
        )
        env = dict(
            os.environ,
            SOURCES__CLOSE__API_KEY="bench",
            SOURCES__CLOSE__BASE_URL=close.base_url,
            DESTINATION__DUCKDB__CREDENTIALS=str(WORK / "close_bench.duckdb"),
            DLT_DATA_DIR=str(WORK / "dlt"),
            PYTHONPATH=str(ROOT),
        )
        env.setdefault(
            "DESTINATION__POSTGRES__CREDENTIALS",
            "postgresql://postgres:postgres@127.0.0.1:5432/postgres",
        )
        elapsed, summary = run_sync(env, args.destination)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows = sum(int(n) for n in re.findall(r"^loaded_rows\.\w+: (\d+)", summary, re.MULTILINE))
        emails = figure(summary, "emails.total")
        print(f"first sync into {args.destination}: {emails} emails, {rows} rows in all tables")
        print(
            f"  time: {elapsed:.1f} s  ->  {emails / elapsed:,.0f} emails/s, {rows / elapsed:,.0f} rows/s"
        )
        print(f"  peak memory of the sync process: {peak_mb:,.0f} MB")
        print(f"  API requests: {figure(summary, 'api.requests')}")

        candidates = [e for e in close.admin.all_emails() if e["status"] == "sent"]
        for email in candidates[: args.changed]:
            close.admin.record_open(email["id"])
        elapsed, summary = run_sync(env, args.destination)
        print(f"nightly sync after {args.changed} emails changed (opens):")
        print(f"  time: {elapsed:.1f} s, emails re-read: {figure(summary, 'emails.updated')}")
        print(f"  API requests: {figure(summary, 'api.requests')}"
              f" (ideal: {args.changed // 100} re-fetch pages + {args.changed // 50} event pages + a few)")  # fmt: skip


if __name__ == "__main__":
    main()
