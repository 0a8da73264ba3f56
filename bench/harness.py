"""The pieces `bench/bench_sync.py` is built from: an emulator process per dataset, the real
`sync` command run under `bench/maxrss.py`, its summary, and fresh destinations."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from close_emulator.testing import EmulatorProcess

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"
POSTGRES_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
# proxies resolved for real hosts must not carry loopback traffic
TRACE_FILE = "requests.jsonl"  # the sync's own request trace (sources/close/trace.py)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclass
class EmulatorSpec:
    """The command line of one emulator: dataset and serving settings."""

    emails: int
    latency_ms: float = 0.0
    rate: float = 20.0
    seed: int = 1
    history_days: int = 730
    history_shape: str = "recent"
    burst_fraction: float = 0.9
    extra: list[str] = field(default_factory=list)

    def args(self, db: Path) -> list[str]:
        """`python -m close_emulator` arguments."""
        args = ["--emails", str(self.emails), "--seed", str(self.seed), "--rate", str(self.rate)]
        args += ["--latency-ms", str(self.latency_ms), "--history-days", str(self.history_days)]
        args += [
            "--history-shape",
            self.history_shape,
            "--burst-fraction",
            str(self.burst_fraction),
        ]
        # the log must hold a whole run for the storm check; counts are exact regardless
        args += ["--request-log-size", str(max(100_000, self.emails)), "--db", str(db)]
        return args + self.extra

    def describe(self) -> str:
        """Settings for the table, e.g. `150 ms, 20 req/s`."""
        rate = f"{self.rate:g} req/s" if self.rate else "no rate limit"
        shape = "" if self.history_shape == "recent" else f", {self.history_shape}"
        return f"{self.latency_ms:g} ms, {rate}, {self.history_days} days{shape}"


class Emulator:
    """A `close_emulator` process whose SQLite file lives in `.bench/` and is deleted after."""

    def __init__(self, name: str, spec: EmulatorSpec) -> None:
        self.spec = spec
        self.db = WORK / "emulators" / f"{name}.sqlite"
        self.db.parent.mkdir(parents=True, exist_ok=True)
        self._remove_db()
        started = time.perf_counter()
        self.process = EmulatorProcess(spec.args(self.db), timeout=3600)
        self.startup_s = time.perf_counter() - started
        self.base_url = self.process.base_url
        self.admin = self.process.admin

    def _remove_db(self) -> None:
        for path in self.db.parent.glob(self.db.name + "*"):
            path.unlink()

    def stop(self) -> None:
        """Stop the process and delete its data."""
        self.process.stop()
        self._remove_db()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Counts:
    """API requests and 429s of one run, as the emulator counted them."""

    requests: int
    throttled: int

    @classmethod
    def read(cls, emulator: Emulator) -> Counts:
        """From the emulator's counters (exact however long the log is)."""
        counts = emulator.admin.request_counts()
        return cls(counts["total"], counts["by_status"].get("429", 0))


@dataclass
class SyncResult:
    """One `sync` command: its summary, wall time, peak memory and the emulator's counts."""

    summary: dict[str, str]
    wall_s: float
    maxrss_mb: float
    emulator: Counts
    trace: list[dict[str, Any]] = field(default_factory=list)  # the sync's request trace

    def figure(self, key: str) -> int:
        """An integer from the summary (0 when missing)."""
        value = self.summary.get(key, "0")
        return int(value) if value.lstrip("-").isdigit() else 0

    @property
    def rows(self) -> int:
        """Rows loaded into all tables."""
        return sum(self.figure(key) for key in self.summary if key.startswith("loaded_rows."))


def parse_summary(stdout: str) -> dict[str, str]:
    """`key: value` lines of the CLI's summary."""
    return dict(re.findall(r"^([\w.]+): (.*)$", stdout, re.MULTILINE))


class SyncRunner:
    """Runs `python -m pipelines.close_emails sync` as a subprocess, one folder per target."""

    def __init__(self, concurrency: int, postgres_dsn: str) -> None:
        self.concurrency = concurrency
        self.postgres_dsn = postgres_dsn

    def env(self, emulator: Emulator, run_dir: Path) -> dict[str, str]:
        """The sync's settings, all through environment variables."""
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
        env.update(
            SOURCES__CLOSE__API_KEY="bench",
            SOURCES__CLOSE__BASE_URL=emulator.base_url,
            SOURCES__CLOSE__CONCURRENCY=str(self.concurrency),
            DESTINATION__DUCKDB__CREDENTIALS=str(run_dir / "close_bench.duckdb"),
            DESTINATION__POSTGRES__CREDENTIALS=self.postgres_dsn,
            DLT_DATA_DIR=str(run_dir / "dlt"),
            RUNTIME__DLTHUB_TELEMETRY="false",
            CLOSE_SYNC_REQUEST_TRACE=str(run_dir / TRACE_FILE),
            PYTHONPATH=str(ROOT),
        )
        return env

    def sync(
        self, emulator: Emulator, run_dir: Path, destination: str = "duckdb", dataset: str = "close"
    ) -> SyncResult:
        """One sync run (the first if `run_dir` is new); counts start from zero."""
        run_dir.mkdir(parents=True, exist_ok=True)
        report = run_dir / "maxrss.json"
        command = [sys.executable, str(ROOT / "bench" / "maxrss.py"), str(report), "--"]
        command += [sys.executable, "-m", "pipelines.close_emails", "sync"]
        command += ["--destination", destination, "--pipeline-name", "close_bench"]
        command += ["--dataset", dataset]
        emulator.admin.clear_requests()
        trace = run_dir / TRACE_FILE
        trace.unlink(missing_ok=True)
        result = subprocess.run(
            command, env=self.env(emulator, run_dir), cwd=run_dir, capture_output=True, text=True
        )
        (run_dir / "sync.out").write_text(result.stdout)
        (run_dir / "sync.err").write_text(result.stderr)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"sync exited with {result.returncode}: {last}")
        measured = json.loads(report.read_text())
        return SyncResult(
            parse_summary(result.stdout),
            measured["wall_s"],
            measured["maxrss_kb"] / 1024,
            Counts.read(emulator),
            [json.loads(line) for line in trace.read_text().splitlines()] if trace.exists() else [],
        )


def fresh_dir(*parts: str) -> Path:
    """An empty folder under `.bench/`."""
    path = WORK.joinpath(*parts)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def postgres_problem(dsn: str) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg2

        psycopg2.connect(dsn, connect_timeout=3).close()
    except Exception as exc:  # any failure to connect means: skip the PostgreSQL rows
        return str(exc).strip().splitlines()[0]
    return None


def fresh_dataset(prefix: str) -> str:
    """A dataset (schema) name no earlier run used."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def drop_dataset(dsn: str, dataset: str) -> None:
    """Remove a benchmark's schema (and dlt's staging schema) from PostgreSQL."""
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        for schema in (dataset, f"{dataset}_staging"):
            cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def git_revision() -> str:
    """The checked-out commit (short), with `+dirty` for uncommitted changes."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return rev + ("+dirty" if dirty else "")
