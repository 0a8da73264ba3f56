"""`make bench`: how fast the sync goes against what Close allows, in one table.

Every run drives the real command line (`python -m pipelines.close_emails sync`) as a
subprocess, under `bench/maxrss.py` (its own wall time and peak memory), against
`close_emulator` in a separate process; state, DuckDB files and emulator databases live in
`.bench/`, each PostgreSQL run gets a fresh dataset (dropped afterwards). Requests and 429s
come from the CLI's summary and, independently, from the emulator's counters.

Scenarios (`--only NAME,...`; all by default):
  first       first sync at --latency-ms and --rate, against ceil(emails/100) / rate seconds
  throughput  first syncs at zero latency, no rate limit, into DuckDB and PostgreSQL
  storm       first sync under a periodic 429 storm: requests sent inside announced waits,
              and wall time against what the storm's allowance permits
  shapes      requests of a first sync over sparse, burst and uniform histories, against
              ceil(N/100) and the budget ceil(N/100) + 3 x concurrency + 10
  nightly     a sync after --changes opens and replies (on the `first` data)
  peers       Airbyte's source-close-com and Singer's tap-closeio beside ours, at --latency-ms

`--quick` shrinks every dataset for a smoke run.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import peers_run  # noqa: E402
from bench.harness import (  # noqa: E402
    POSTGRES_DSN,
    WORK,
    Emulator,
    EmulatorSpec,
    SyncResult,
    SyncRunner,
    drop_dataset,
    fresh_dataset,
    fresh_dir,
    git_revision,
    postgres_problem,
)
from bench.table import Row, render  # noqa: E402
from bench.waits import client_requests_inside_waits, requests_inside_waits, storm_bound_s  # noqa: E402

SCENARIOS = ("first", "throughput", "storm", "shapes", "nightly", "peers")
NUMBERS = {name: str(i) for i, name in enumerate(SCENARIOS, 1)}


@dataclass(frozen=True)
class Sizes:
    """Dataset sizes of every scenario."""

    first: int = 100_000
    throughput: tuple[int, ...] = (100_000, 300_000)
    storm: int = 20_000
    sparse: int = 1_000
    sparse_days: int = 3650
    burst: int = 33_000  # with burst_fraction 0.9: ~30,000 on one day, ~3,000 over ten years
    burst_days: int = 3650
    burst_fraction: float = 0.9
    uniform: int = 30_000
    uniform_days: int = 730
    changes: int = 1_000
    peers: int = 0  # 0: the `first` dataset


QUICK = Sizes(
    first=2_000,
    throughput=(2_000, 6_000),
    storm=2_000,
    sparse=200,
    burst=3_300,
    uniform=2_000,
    changes=100,
)


def say(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sync_row(scenario: str, result: SyncResult, figures: str) -> Row:
    """A table row for one of our runs."""
    return Row(
        scenario,
        result.figure("emails.total"),
        result.wall_s,
        (result.figure("api.requests"), result.emulator.requests),
        (result.figure("api.throttled_429"), result.emulator.throttled),
        figures,
    )


def failed_row(scenario: str, emails: int, problem: object) -> Row:
    """A row saying why a run has no figures."""
    return Row(scenario, emails, None, figures=f"FAILED: {problem}")


class Bench:
    """Runs the selected scenarios and collects the table's rows."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes) -> None:
        self.args = args
        self.sizes = sizes
        self.runner = SyncRunner(args.concurrency, args.postgres_dsn)
        self.rows: list[tuple[str, Row]] = []
        self.notes: list[str] = []

    def add(self, scenario: str, row: Row) -> None:
        """Remember a row (numbered by scenario)."""
        self.rows.append((NUMBERS[scenario], row))

    def spec(self, emails: int, **changes: object) -> EmulatorSpec:
        """An emulator at the Close-like settings (--latency-ms, --rate), seed 1."""
        spec = EmulatorSpec(emails, latency_ms=self.args.latency_ms, rate=self.args.rate)
        return replace(spec, **changes)  # type: ignore[arg-type]

    def run(self, selected: list[str]) -> None:
        """Each selected scenario, on as few generated datasets as possible."""
        peers_on_first = "peers" in selected and self.peers_emails() == self.sizes.first
        if {"first", "nightly"} & set(selected) or peers_on_first:
            self.first_nightly_peers(selected, peers_on_first)
        if "peers" in selected and not peers_on_first:
            self.peers_separately()
        if "throughput" in selected:
            self.throughput()
        if "storm" in selected:
            self.storm()
        if "shapes" in selected:
            self.shapes()

    def peers_emails(self) -> int:
        return self.args.peers_emails or self.sizes.peers or self.sizes.first

    def bound_s(self, emails: int) -> float:
        """ceil(emails/100) pages at --rate requests per second."""
        return math.ceil(emails / 100) / self.args.rate if self.args.rate else 0.0

    # --- 1, 5 and 6: one dataset at Close-like settings ---------------------------------------

    def first_nightly_peers(self, selected: list[str], peers_on_first: bool) -> None:
        """The first sync, then (on the same emulator) the peers and the nightly run."""
        n = self.sizes.first
        spec = self.spec(n)
        say(f"first: generating {n:,} emails ({spec.describe()})")
        with Emulator("first", spec) as emulator:
            run_dir = fresh_dir("first")
            first = self.first(emulator, run_dir, n)
            if peers_on_first:
                self.peers(emulator, ours=first, label=f"ours, = row 1 ({spec.describe()})")
            if "nightly" in selected and first is not None:
                self.nightly(emulator, run_dir)

    def first(self, emulator: Emulator, run_dir: Path, n: int) -> SyncResult | None:
        scenario = f"first sync ({emulator.spec.describe()})"
        say(f"first: syncing {n:,} emails into DuckDB")
        try:
            result = self.runner.sync(emulator, run_dir)
        except RuntimeError as exc:
            self.add("first", failed_row(scenario, n, exc))
            return None
        bound = self.bound_s(n)
        ratio = f"{result.wall_s / bound:.2f}× the bound {bound:.1f} s" if bound else "no bound"
        figures = f"{ratio} (ceil(N/100)/{self.args.rate:g}); {result.figure('windows')} windows"
        self.add("first", sync_row(scenario, result, figures))
        return result

    def nightly(self, emulator: Emulator, run_dir: Path) -> None:
        """Opens and replies on sent emails through the admin API, then a sync."""
        changes = self.sizes.changes
        sent = [
            e["id"] for e in emulator.admin.all_emails(["id", "status"]) if e["status"] == "sent"
        ]
        opens, replies = sent[: changes - changes // 2], sent[changes - changes // 2 : changes]
        say(f"nightly: {len(opens)} opens and {len(replies)} replies, then a sync")
        for email_id in opens:
            emulator.admin.record_open(email_id)
        for email_id in replies:
            emulator.admin.receive_reply(email_id)
        scenario = f"nightly after {changes:,} changes ({len(opens)} opens, {len(replies)} replies)"
        try:
            result = self.runner.sync(emulator, run_dir)
        except RuntimeError as exc:
            self.add("nightly", failed_row(scenario, self.sizes.first, exc))
            return
        ideal = math.ceil(changes / 100) + math.ceil((changes + len(replies)) / 50)
        figures = (
            f"new {result.figure('emails.new')}, updated {result.figure('emails.updated')}; "
            f"about {ideal} = ceil(changed/100) re-fetches + ceil(events/50) event pages, plus a few"
        )
        self.add("nightly", sync_row(scenario, result, figures))

    # --- 6: peers ---------------------------------------------------------------------------------

    def peers_separately(self) -> None:
        """Ours and both peers on a smaller common dataset."""
        n = self.peers_emails()
        spec = self.spec(n)
        self.notes.append(
            f"row 6 runs ours and both peers on a common dataset of {n:,} emails "
            f"({spec.describe()}), not row 1's"
        )
        say(f"peers: generating {n:,} emails ({spec.describe()})")
        with Emulator("peers", spec) as emulator:
            try:
                ours = self.runner.sync(emulator, fresh_dir("peers", "ours"))
            except RuntimeError as exc:
                self.add("peers", failed_row("ours", n, exc))
                ours = None
            self.peers(emulator, ours, label=f"ours ({spec.describe()})")

    def peers(self, emulator: Emulator, ours: SyncResult | None, label: str) -> None:
        """Rows for ours (`ours`) and each peer reading the same emulator."""
        n = emulator.spec.emails
        if ours is not None:
            self.add("peers", sync_row(label, ours, "into DuckDB, with child tables"))
        problem = peers_run.install()
        work = fresh_dir("peers", "run")
        for run in (peers_run.run_airbyte, peers_run.run_singer):
            name = peers_run.AIRBYTE if run is peers_run.run_airbyte else peers_run.SINGER
            if problem:
                self.add("peers", failed_row(name, n, problem))
                continue
            say(f"peers: {name} reading {n:,} emails")
            result = run(emulator, work, self.args.peers_timeout)
            figures = f"{result.records:,} of {n:,} emails emitted (JSON lines, no load)"
            if ours is not None and result.problem is None:
                figures += f"; {result.wall_s / ours.wall_s:.1f}× our wall time"
            if result.problem:
                figures = f"FAILED: {result.problem}; " + figures
            counts = (None, result.counts.requests), (None, result.counts.throttled)
            self.add("peers", Row(name, n, result.wall_s, *counts, figures))

    # --- 2: throughput ----------------------------------------------------------------------------

    def throughput(self) -> None:
        """At zero latency and no rate limit: emails/s and peak memory, DuckDB and PostgreSQL."""
        pg_problem = postgres_problem(self.args.postgres_dsn)
        for n in self.sizes.throughput:
            spec = EmulatorSpec(n, latency_ms=0, rate=0)
            say(f"throughput: generating {n:,} emails ({spec.describe()})")
            with Emulator(f"throughput_{n}", spec) as emulator:
                self.throughput_run(emulator, n, "duckdb", None)
                self.throughput_run(emulator, n, "postgres", pg_problem)

    def throughput_run(
        self, emulator: Emulator, n: int, destination: str, skip: str | None
    ) -> None:
        scenario = f"first sync into {destination} (0 ms, no rate limit)"
        if skip:
            self.add("throughput", Row(scenario, n, None, figures=f"skipped: PostgreSQL: {skip}"))
            return
        dataset = fresh_dataset("bench") if destination == "postgres" else "close"
        say(f"throughput: syncing {n:,} emails into {destination}")
        try:
            result = self.runner.sync(
                emulator, fresh_dir(f"throughput_{n}_{destination}"), destination, dataset
            )
        except RuntimeError as exc:
            self.add("throughput", failed_row(scenario, n, exc))
            return
        finally:
            if destination == "postgres":
                drop_dataset(self.args.postgres_dsn, dataset)
        emails = result.figure("emails.total")
        figures = (
            f"{emails / result.wall_s:,.0f} emails/s, {result.rows / result.wall_s:,.0f} rows/s; "
            f"peak RSS {result.maxrss_mb:,.0f} MB"
        )
        self.add("throughput", sync_row(scenario, result, figures))

    # --- 3: storm ---------------------------------------------------------------------------------

    def storm(self) -> None:
        """A first sync under a periodic storm (set just before the sync starts)."""
        n, period, duration = self.sizes.storm, self.args.storm_period_s, self.args.storm_duration_s
        spec = self.spec(n)
        scenario = f"429 storm: {duration:g} s of every {period:g} s ({spec.describe()})"
        say(f"storm: generating {n:,} emails ({spec.describe()})")
        with Emulator("storm", spec) as emulator:
            emulator.admin.set_faults(storm_period_s=period, storm_duration_s=duration)
            say(f"storm: syncing {n:,} emails")
            try:
                result = self.runner.sync(emulator, fresh_dir("storm"))
            except RuntimeError as exc:
                self.add("storm", failed_row(scenario, n, exc))
                return
            log = emulator.admin.requests()
        inside = client_requests_inside_waits(result.trace)
        arrived = requests_inside_waits(log)
        bound = storm_bound_s(log, self.args.rate, period, duration)
        allowance = (period - duration) / period * self.args.rate
        figures = (
            f"{inside} requests sent inside an announced wait (must be 0; {arrived} arrived in"
            " one, counting those in flight); "
            f"{result.wall_s / bound:.2f}× the allowance's {bound:.1f} s "
            f"(answered requests of the busiest group / {allowance:g} req/s)"
        )
        self.add("storm", sync_row(scenario, result, figures))

    # --- 4: history shapes ----------------------------------------------------------------------

    def shapes(self) -> None:
        """Requests of a first sync over sparse, burst and uniform histories."""
        s = self.sizes
        shapes = (
            ("sparse", s.sparse, s.sparse_days, {}),
            ("burst", s.burst, s.burst_days, {"burst_fraction": s.burst_fraction}),
            ("uniform", s.uniform, s.uniform_days, {}),
        )
        for shape, n, days, extra in shapes:
            spec = self.spec(n, history_shape=shape, history_days=days, **extra)
            scenario = f"{shape} history ({spec.describe()})"
            if shape == "burst":
                scenario = f"burst history, {s.burst_fraction:.0%} on one day ({spec.describe()})"
            say(f"shapes: generating {n:,} emails ({spec.describe()})")
            with Emulator(f"shape_{shape}", spec) as emulator:
                say(f"shapes: syncing the {shape} history")
                try:
                    result = self.runner.sync(emulator, fresh_dir(f"shape_{shape}"))
                except RuntimeError as exc:
                    self.add("shapes", failed_row(scenario, n, exc))
                    continue
            self.add("shapes", sync_row(scenario, result, self.budget(n, result)))

    def budget(self, n: int, result: SyncResult) -> str:
        """Requests against ceil(N/100) and the budget ceil(N/100) + 3 x concurrency + 10."""
        pages = math.ceil(n / 100)
        budget = pages + 3 * self.args.concurrency + 10
        used = result.emulator.requests
        verdict = "within" if used <= budget else "OVER"
        return f"{used / pages:.2f}× ceil(N/100) = {pages}; {verdict} the budget {budget}"

    # --- the table --------------------------------------------------------------------------------

    def header(self, selected: list[str], started: datetime) -> list[str]:
        """Sizes and settings of this run."""
        a, s = self.args, self.sizes
        sizes = {
            "first": f"{s.first:,} emails",
            "throughput": " and ".join(f"{n:,}" for n in s.throughput) + " emails",
            "storm": f"{s.storm:,} emails, storm {a.storm_duration_s:g} s of every {a.storm_period_s:g} s",
            "shapes": f"sparse {s.sparse:,}/{s.sparse_days} days, burst {s.burst:,}/{s.burst_days} days "
            f"({s.burst_fraction:.0%} on one day), uniform {s.uniform:,}/{s.uniform_days} days",
            "nightly": f"{s.changes:,} changes on the first dataset",
            "peers": f"{self.peers_emails():,} emails, timeout {a.peers_timeout:g} s per peer",
        }  # fmt: skip
        lines = [
            f"# make bench{' --quick' if a.quick else ''}: {started:%Y-%m-%d %H:%M} UTC, "
            f"commit {git_revision()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            f"# sync: concurrency {a.concurrency}; Close-like emulator: {a.latency_ms:g} ms latency, "
            f"{a.rate:g} req/s per endpoint group; seed 1; DuckDB unless said; PostgreSQL "
            f"{a.postgres_dsn.rsplit('@', 1)[-1]}, a fresh dataset per run",
        ]
        lines += [f"# {NUMBERS[name]} {name}: {sizes[name]}" for name in selected]
        return lines + [f"# note: {note}" for note in self.notes]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="small datasets, for a smoke run")
    add("--only", default=",".join(SCENARIOS), help="scenarios to run, comma-separated (all)")
    add("--latency-ms", type=float, default=150.0, help="Close-like latency (150)")
    add("--rate", type=float, default=20.0, help="Close-like rate limit, req/s per group (20)")
    add("--concurrency", type=int, default=8, help="SOURCES__CLOSE__CONCURRENCY (8, the default)")
    add("--first-emails", type=int, help="first/nightly dataset (100000; quick 2000)")
    add("--throughput-emails", help="comma-separated sizes (100000,300000; quick 2000,6000)")
    add("--storm-emails", type=int, help="storm dataset (20000; quick 2000)")
    add("--storm-period-s", type=float, default=5.0, help="storm period P (5)")
    add("--storm-duration-s", type=float, default=2.0, help="storm length D per period (2)")
    add("--changes", type=int, help="changes before the nightly run (1000; quick 100)")
    add("--peers-emails", type=int, help="peers' dataset; other than --first-emails, ours runs on it too (default: the first dataset)")  # fmt: skip
    add("--peers-timeout", type=float, default=3600.0, help="seconds per peer run (3600)")
    add(
        "--postgres-dsn",
        default=os.environ.get("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_DSN),
        help="PostgreSQL for the throughput rows (DESTINATION__POSTGRES__CREDENTIALS or local)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))} (known: {', '.join(SCENARIOS)})")  # fmt: skip
    if not 0 < args.storm_duration_s < args.storm_period_s:
        parser.error("--storm-duration-s must be positive and shorter than --storm-period-s")
    return args


def sizes_from(args: argparse.Namespace) -> Sizes:
    """Full or quick sizes, with the command line's overrides."""
    sizes = QUICK if args.quick else Sizes()
    overrides: dict[str, object] = {
        "first": args.first_emails,
        "storm": args.storm_emails,
        "changes": args.changes,
    }
    if args.throughput_emails:
        overrides["throughput"] = tuple(int(n) for n in args.throughput_emails.split(","))
    return replace(sizes, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    """Run, then print the table (also saved as `.bench/results.md`)."""
    args = parse_args(argv)
    selected = [name for name in SCENARIOS if name in args.only.split(",")]
    bench = Bench(args, sizes_from(args))
    started = datetime.now(UTC)
    clock = time.perf_counter()
    bench.run(selected)
    rows = sorted(bench.rows, key=lambda numbered: numbered[0])  # stable: by scenario
    table = render(bench.header(selected, started), rows)
    table += f"\n\n(whole benchmark: {time.perf_counter() - clock:,.0f} s)"
    WORK.mkdir(exist_ok=True)
    (WORK / "results.md").write_text(table + "\n")
    print(table)
    failed = any(row.figures.startswith("FAILED") for _, row in bench.rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
