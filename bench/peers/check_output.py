"""Compare what a peer connector read with what the Close emulator holds (used by
bench/peers_check.sh with the project venv; standard library only).

    python check_output.py --label NAME --kind airbyte|singer --stream STREAM \
        --output run.jsonl --expected emails.json --admin http://127.0.0.1:PORT/_emulator \
        [--check check.jsonl] [--window-start ISO --window-lookback-seconds N --window-days D]

Reads the connector's JSON-lines output, counts the RECORD messages of STREAM, compares their
ids with the emulator's emails (`expected`: the admin API's `/emails?_fields=id,date_created`),
summarizes the emulator's request log (then clears it) and prints one summary line. Exit code
0 when the peer read every email exactly as the emulator holds them, 1 otherwise.

Records that tap-closeio cannot see are explained, not excused silently: its activity windows
use strict `date_created__gt` / `__lt` at second precision, so an email created exactly on a
window edge falls in no window (peers.md §3.2). With `--window-*` such emails are listed as
"on a window edge" and do not fail the check.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta


def records(path: str, kind: str, stream: str) -> tuple[list[dict], list[dict]]:
    """(records of `stream`, other messages) from a connector's JSON-lines output."""
    found, other = [], []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("type") != "RECORD":
                other.append(message)
                continue
            if kind == "airbyte":
                if message["record"]["stream"] == stream:
                    found.append(message["record"]["data"])
            elif message.get("stream") == stream:
                found.append(message["record"])
    return found, other


def parse(value: str) -> datetime:
    value = value.replace("Z", "+00:00")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def window_edges(start: str, lookback: int, days: int, until: datetime) -> set[datetime]:
    """The window edges tap-closeio uses: start - lookback, then every `days` days (seconds)."""
    edge = parse(start).replace(microsecond=0) - timedelta(seconds=lookback)
    edges = set()
    while edge <= until + timedelta(days=days):
        edges.add(edge)
        edge += timedelta(days=days)
    return edges


def request_summary(admin: str) -> tuple[int, Counter, Counter]:
    """(count, statuses, method+path counts) of the emulator's request log, then clear it."""
    with urllib.request.urlopen(admin + "/requests", timeout=30) as response:
        log = json.load(response)
    request = urllib.request.Request(admin + "/requests", method="DELETE")
    urllib.request.urlopen(request, timeout=30).close()
    statuses = Counter(entry["status"] for entry in log)
    paths = Counter(f"{entry['method']} {entry['path']}" for entry in log)
    return len(log), statuses, paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--kind", choices=("airbyte", "singer"), required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--expected", required=True)
    parser.add_argument("--admin", required=True)
    parser.add_argument("--check", help="Airbyte `check` output (must report SUCCEEDED)")
    parser.add_argument("--discover", help="Singer discover catalog (must list event_log)")
    parser.add_argument("--window-start")
    parser.add_argument("--window-lookback-seconds", type=int, default=0)
    parser.add_argument("--window-days", type=int, default=15)
    args = parser.parse_args()

    problems: list[str] = []
    notes: list[str] = []
    if args.check:
        _, messages = records(args.check, args.kind, args.stream)
        statuses = [
            m["connectionStatus"]["status"] for m in messages if m["type"] == "CONNECTION_STATUS"
        ]
        if statuses != ["SUCCEEDED"]:
            problems.append(f"check reported {statuses or 'nothing'}")
        else:
            notes.append("check SUCCEEDED")
    if args.discover:
        with open(args.discover, encoding="utf-8") as catalog:
            streams = [s["tap_stream_id"] for s in json.load(catalog)["streams"]]
        if "event_log" not in streams or args.stream not in streams:
            problems.append(f"discover listed {streams}")
        else:
            notes.append(f"discover listed {len(streams)} streams incl. event_log")

    with open(args.expected, encoding="utf-8") as expected_file:
        expected = {email["id"]: email["date_created"] for email in json.load(expected_file)}
    got, _ = records(args.output, args.kind, args.stream)
    ids = Counter(record["id"] for record in got)
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    missing = sorted(set(expected) - set(ids))
    unknown = sorted(set(ids) - set(expected))
    changed = sum(
        1
        for record in got
        if record["id"] in expected
        and parse(record.get("date_created") or "1970-01-01") != parse(expected[record["id"]])
    )
    if args.window_start and missing:
        latest = max(parse(value) for value in expected.values())
        edges = window_edges(
            args.window_start, args.window_lookback_seconds, args.window_days, latest
        )
        on_edge = [i for i in missing if parse(expected[i]) in edges]
        if on_edge:
            notes.append(f"{len(on_edge)} email(s) exactly on a window edge not read (known)")
            missing = [i for i in missing if i not in on_edge]
    if missing:
        problems.append(f"{len(missing)} emails not read (e.g. {missing[0]})")
    if unknown:
        problems.append(f"{len(unknown)} records not in the emulator (e.g. {unknown[0]})")
    if duplicates:
        problems.append(f"{duplicates} duplicate records")
    if changed:
        problems.append(f"{changed} records whose date_created differs from the emulator's")
    if not got:
        problems.append("no records")

    count, statuses, paths = request_summary(args.admin)
    bad = {status: n for status, n in statuses.items() if status != 200}
    if bad:
        problems.append(f"non-200 answers: {bad}")
    top = ", ".join(f"{path} x{n}" for path, n in paths.most_common(4))
    verdict = "FAIL" if problems else "PASS"
    read = (
        f"read {args.stream}: {len(got)} records, {len(ids)} unique ids vs the emulator's "
        f"{len(expected)} emails"
    )
    print(f"{verdict} {args.label}: " + "; ".join([*notes, read, *problems]))
    print(f"     {count} API requests to the emulator ({top})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
