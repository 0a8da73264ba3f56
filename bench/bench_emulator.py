"""`make bench-emulator`: how fast the Close emulator generates data and serves deep pages.

1. Generates 100,000 emails (and then 1,000,000, unless `--max-emails` is lower) into a SQLite
   file under .bench/ and reports the time (target for 100,000: under 60 s).
2. Serves that file with the real CLI (`python -m close_emulator --reuse-db`, a separate
   process, rate limit off) and, over HTTP with one keep-alive `requests.Session`, asks for
   pages of 100 inside the busiest one-day `date_created` window with `_skip` = 0, 100, ...,
   10,000 in random order, and reports the median and p95 time per page (target: under 20 ms).

The data is generated with a short history (10 days per 100,000 emails), so that every dataset
has busy days of more than 10,100 emails: the datasets differ in total size, not in how full a
day is. The database is deleted at the end.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from close_emulator import Emulator, EmulatorConfig  # noqa: E402
from close_emulator.testing import EmulatorProcess  # noqa: E402

DAY_US = 86_400_000_000
MAX_SKIP = 10_000
PAGE = 100
GENERATE_TARGET_S = 60.0
PAGE_TARGET_MS = 20.0


@dataclass
class Result:
    emails: int
    history_days: int
    generate_s: float
    db_mb: float
    day: str
    day_emails: int
    samples_ms: list[float]
    skip0_ms: list[float]
    skip_max_ms: list[float]
    page_kb: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def busiest_day(db: Path) -> tuple[int, int]:
    """(UTC day number, emails created that day) of the busiest complete day in the file."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT date_created_us / ? AS day, count(*) FROM emails GROUP BY day "
            "ORDER BY day DESC",
            (DAY_US,),
        ).fetchall()
    finally:
        conn.close()
    complete = rows[1:] or rows  # the newest day is still running
    day, count = max(complete, key=lambda row: row[1])
    return day, count


def generate_default(n: int, seed: int, workdir: Path) -> float:
    """Seconds to generate `n` emails with the default settings (730 days of history, events
    for the last 30 days), as `python -m close_emulator --emails N` does."""
    db = workdir / "default.sqlite"
    print(f"{n:,} emails with the default settings: generating ...", flush=True)
    emulator = Emulator(EmulatorConfig(rate=0), db_path=str(db))
    started = time.perf_counter()
    emulator.generate(n, seed)
    took = time.perf_counter() - started
    emulator.close()
    for path in workdir.glob("default.sqlite*"):
        path.unlink()
    print(f"  generated in {took:.1f} s ({n / took:,.0f} emails/s)", flush=True)
    return took


def run(n: int, seed: int, passes: int, workdir: Path) -> Result:
    history_days = max(2, round(10 * n / 100_000))
    db = workdir / f"emulator_{n}.sqlite"
    print(f"\n{n:,} emails (history {history_days} days): generating ...", flush=True)
    config = EmulatorConfig(rate=0, history_days=history_days)
    emulator = Emulator(config, db_path=str(db))
    started = time.perf_counter()
    emulator.generate(n, seed)
    generate_s = time.perf_counter() - started
    emulator.close()
    db_mb = sum(p.stat().st_size for p in workdir.glob(f"emulator_{n}.sqlite*")) / 2**20
    print(
        f"  generated in {generate_s:.1f} s ({n / generate_s:,.0f} emails/s), {db_mb:,.0f} MB",
        flush=True,
    )

    day, day_emails = busiest_day(db)
    if day_emails < MAX_SKIP + PAGE:
        raise SystemExit(f"the busiest day holds only {day_emails} emails (< {MAX_SKIP + PAGE})")
    start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)
    window = {
        "date_created__gte": start.isoformat(),
        "date_created__lt": (start + timedelta(days=1)).isoformat(),
        "_limit": PAGE,
    }
    args = ["--db", str(db), "--reuse-db", "--emails", str(n), "--seed", str(seed)]
    args += ["--rate", "0", "--history-days", str(history_days)]
    skips = list(range(0, MAX_SKIP + 1, PAGE))
    samples: dict[int, list[float]] = {skip: [] for skip in skips}
    sizes: list[int] = []
    with EmulatorProcess(args) as close, requests.Session() as session:
        session.auth = ("bench", "")
        url = close.base_url + "/activity/email/"
        rng = random.Random(seed)
        for pass_ in range(passes + 1):  # pass 0 warms the caches and checks the pages
            order = skips[:]
            rng.shuffle(order)
            for skip in order:
                started = time.perf_counter()
                response = session.get(url, params={**window, "_skip": skip}, timeout=60)
                body = response.content
                took = (time.perf_counter() - started) * 1000
                if pass_ == 0:
                    page = response.json()
                    if response.status_code != 200 or len(page["data"]) != PAGE:
                        raise SystemExit(f"_skip={skip}: {response.status_code} {body[:200]!r}")
                    if not all(
                        e["date_created"].startswith(start.date().isoformat()) for e in page["data"]
                    ):
                        raise SystemExit(f"_skip={skip}: a row outside the window")
                    sizes.append(len(body))
                else:
                    samples[skip].append(took)
    everything = [ms for values in samples.values() for ms in values]
    return Result(
        n,
        history_days,
        generate_s,
        db_mb,
        start.date().isoformat(),
        day_emails,
        everything,
        samples[0],
        samples[MAX_SKIP],
        statistics.mean(sizes) / 1024,
    )


def report(results: list[Result], passes: int, default_n: int, default_s: float) -> None:
    print("\nClose emulator benchmark (2-core machine figures vary with other load)\n")
    print(
        f"generate {default_n:,} emails, default settings (730 days, events for the last 30): "
        f"{default_s:.1f} s ({default_n / default_s:,.0f} emails/s)\n"
    )
    header = (
        f"{'stored emails':>13} | {'generate':>9} | {'DB':>8} | {'busiest day':>18} | "
        f"{'pages':>5} | {'median':>8} | {'p95':>8} | {'max':>8} | {'_skip=0':>8} | "
        f"{'_skip=10k':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.emails:>13,} | {r.generate_s:>7.1f} s | {r.db_mb:>5,.0f} MB | "
            f"{r.day} {r.day_emails:>7,} | {len(r.samples_ms):>5} | "
            f"{statistics.median(r.samples_ms):>5.1f} ms | "
            f"{percentile(r.samples_ms, 0.95):>5.1f} ms | "
            f"{max(r.samples_ms):>5.1f} ms | {statistics.median(r.skip0_ms):>5.1f} ms | "
            f"{statistics.median(r.skip_max_ms):>6.1f} ms"
        )
    print(
        f"\npages: GET /activity/email/ with _limit={PAGE}, a one-day date_created window, "
        f"_skip = 0, {PAGE}, ..., {MAX_SKIP:,} in random order, {passes} timed passes after a "
        f"warm-up pass; one keep-alive requests.Session, emulator CLI in its own process; "
        f"time = request sent to body received. Mean page size: "
        + ", ".join(f"{r.page_kb:,.0f} KB" for r in results)
        + "."
    )
    print(
        "generate = the benchmark dataset (history 10 days per 100,000 emails, so every email "
        "also gets its 'created' event): slower than the default settings above."
    )
    slowest = max([default_s] + [r.generate_s for r in results if r.emails == default_n])
    verdicts = [
        f"generate {default_n:,}: {default_s:.1f} s default, {slowest:.1f} s at worst "
        f"(target < {GENERATE_TARGET_S:.0f} s): "
        + ("met" if slowest < GENERATE_TARGET_S or default_n != 100_000 else "MISSED")
    ]
    for r in results:
        median = statistics.median(r.samples_ms)
        verdicts.append(
            f"page of {PAGE} at {r.emails:,} stored: median {median:.1f} ms, p95 "
            f"{percentile(r.samples_ms, 0.95):.1f} ms (target < {PAGE_TARGET_MS:.0f} ms): "
            + ("met" if percentile(r.samples_ms, 0.95) < PAGE_TARGET_MS else "MISSED (p95)")
        )
    print("\n".join(verdicts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--max-emails",
        type=int,
        default=1_000_000,
        help="largest dataset (default 1,000,000, about 3 minutes to generate; "
        "100000 for a quick run)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the skips (3)")
    args = parser.parse_args()
    sizes = [n for n in (100_000, 1_000_000) if n <= args.max_emails] or [args.max_emails]
    (ROOT / ".bench").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="emulator_", dir=ROOT / ".bench"))
    results = []
    try:
        default_n = min(100_000, sizes[0])
        default_s = generate_default(default_n, args.seed, workdir)
        for n in sizes:
            results.append(run(n, args.seed, args.passes, workdir))
            for path in workdir.glob(f"emulator_{n}.sqlite*"):
                path.unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, args.passes, default_n, default_s)


if __name__ == "__main__":
    main()
