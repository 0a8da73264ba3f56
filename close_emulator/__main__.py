"""`python -m close_emulator`: generate data and serve the emulated Close API until SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from .emulator import Emulator, EmulatorConfig
from .generator import HISTORY_SHAPES
from .server import make_server

FAULT_OPTIONS = (
    ("latency_ms", float, "fixed delay added to every API request, in ms"),
    ("jitter_ms", float, "extra random delay, uniform in 0..JITTER_MS"),
    ("error_rate", float, "fraction of API requests answered with a random 500/502/503/504"),
    ("html_error_fraction", float, "fraction of those errors with a proxy's HTML body"),
    ("drop_rate", float, "fraction of API requests whose connection is closed unanswered"),
    ("stall_rate", float, "fraction of API requests answered only after --stall-seconds"),
    ("stall_seconds", float, "how long a stalled request waits (default 30)"),
    ("truncate_rate", float, "fraction of API responses cut off after half the body"),
    ("storm_period_s", float, "periodic 429 storm: its period in seconds (default 0 = off)"),
    ("storm_duration_s", float, "periodic 429 storm: its first seconds of each period are 429s"),
    ("fault_seed", int, "seed of the fault random generator (default 0)"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m close_emulator",
        description="A local emulator of Close CRM's REST API (email activities and event log).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    parser.add_argument("--emails", type=int, default=10_000, help="emails to generate (10000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated data (1)")
    parser.add_argument(
        "--api-key", help="accept only this API key (default: any non-empty key is accepted)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=20.0,
        help="requests per second per API key per endpoint group (organization: 3x); 0 = off",
    )
    parser.add_argument("--max-skip", type=int, default=250_000, help="largest _skip (250000)")
    parser.add_argument("--max-limit", type=int, default=100, help="largest _limit on lists (100)")
    parser.add_argument(
        "--event-max-limit", type=int, default=50, help="largest _limit on /event/ (50)"
    )
    parser.add_argument(
        "--retention-days", type=float, default=30, help="event log retention in days (30)"
    )
    parser.add_argument(
        "--history-days", type=int, default=730, help="how far back generated data goes (730)"
    )
    parser.add_argument(
        "--history-shape",
        choices=HISTORY_SHAPES,
        default="recent",
        help="how thread start times spread over the history: recent (default: more recent is "
        "likelier), uniform, sparse (about one active day a month), burst (--burst-fraction of "
        "threads on one day, the rest uniform) or mix",
    )
    parser.add_argument(
        "--burst-fraction",
        type=float,
        default=0.9,
        help="burst shape: the share of threads started on the burst day (0.9)",
    )
    parser.add_argument(
        "--request-log-size",
        type=int,
        default=100_000,
        help="API requests the request log keeps (100000; counts cover every request)",
    )
    parser.add_argument(
        "--thread-delete-email-events",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="deleting a thread also writes a 'deleted' event per email (default on)",
    )
    parser.add_argument(
        "--naive-event-timestamps",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="event date_created/date_updated without a UTC offset, as seen on Close (on)",
    )
    parser.add_argument(
        "--naive-write-timestamps",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="create/update answers with timestamps without offset and with microseconds, as"
        " Close's own examples show (off)",
    )
    parser.add_argument(
        "--fractional-reset",
        action="store_true",
        help="RateLimit reset in fractional seconds instead of whole seconds",
    )
    parser.add_argument(
        "--legacy-rate-headers",
        action="store_true",
        help="also send X-Rate-Limit-Limit/-Remaining/-Reset headers",
    )
    for name, kind, text in FAULT_OPTIONS:
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=text)
    parser.add_argument(
        "--db", help="SQLite file to use (default: a temporary file deleted at exit)"
    )
    parser.add_argument(
        "--reuse-db",
        action="store_true",
        help="skip generation when --db already holds data generated with the same --emails, "
        "and --seed",
    )
    parser.add_argument(
        "--log-requests", action="store_true", help="print an access log line per request"
    )
    return parser.parse_args(argv)


def _same_generation(emulator: Emulator, n_emails: int, seed: int) -> bool:
    """Whether the database already holds data generated with these settings (a database from
    before history shapes existed holds the default shape)."""
    generated = {
        "history_days": 730,
        "history_shape": "recent",
        "burst_fraction": 0.9,
        **(emulator.generation() or {}),
    }
    wanted = emulator.generation_key(n_emails, seed)
    return all(generated.get(key) == value for key, value in wanted.items())


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGTERM or SIGINT."""
    args = parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    config = EmulatorConfig(
        api_key=args.api_key,
        rate=args.rate,
        rate_fractional_reset=args.fractional_reset,
        legacy_rate_headers=args.legacy_rate_headers,
        max_skip=args.max_skip,
        max_limit=args.max_limit,
        event_max_limit=args.event_max_limit,
        retention_days=args.retention_days,
        history_days=args.history_days,
        history_shape=args.history_shape,
        burst_fraction=args.burst_fraction,
        request_log_size=args.request_log_size,
        thread_delete_email_events=args.thread_delete_email_events,
        naive_event_timestamps=args.naive_event_timestamps,
        naive_write_timestamps=args.naive_write_timestamps,
    )
    emulator = Emulator(config, db_path=args.db)
    try:
        if not (args.reuse_db and _same_generation(emulator, args.emails, args.seed)):
            started = time.monotonic()
            emulator.generate(args.emails, args.seed)
            took = time.monotonic() - started
            print(f"generated {args.emails} emails in {took:.1f} s", file=sys.stderr)
        faults = {
            ("seed" if name == "fault_seed" else name): getattr(args, name)
            for name, _, _ in FAULT_OPTIONS
            if getattr(args, name) is not None
        }
        emulator.faults.set(**faults)
        server = make_server(emulator, args.host, args.port, args.log_requests)
        host, port = server.server_address[:2]
        print(
            f"close_emulator listening on http://{host}:{port}/api/v1 "
            f"({args.emails} emails, seed {args.seed})",
            flush=True,
        )
        try:
            server.serve_forever()
        finally:
            server.server_close()
    finally:
        emulator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
