"""Time Airbyte's `source-close-com` and Singer's `tap-closeio` reading every email from an
emulator, installed and redirected exactly as `bench/peers_check.sh` does it (`.peers/`)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .harness import PROXY_VARS, ROOT, Counts, Emulator

PEERS = ROOT / ".peers"
AIRBYTE = "airbyte-source-close-com==0.5.30"
SINGER = "tap-closeio==1.6.6"
AIRBYTE_CATALOG = {
    "streams": [
        {
            "stream": {
                "name": "email_activities",
                "json_schema": {"type": "object"},
                "supported_sync_modes": ["full_refresh", "incremental"],
                "source_defined_cursor": True,
                "default_cursor_field": ["date_created"],
            },
            "sync_mode": "incremental",
            "cursor_field": ["date_created"],
            "destination_sync_mode": "append_dedup",
            "primary_key": [["id"]],
        }
    ]
}


@dataclass
class PeerResult:
    """One peer's read: wall time, distinct email ids it emitted, requests, and how it ended."""

    label: str
    wall_s: float
    records: int
    counts: Counts
    problem: str | None = None  # why it failed, if it did


def install() -> str | None:
    """Install both peers with `peers_check.sh` (skipped when present); None or the problem."""
    env = {**os.environ, "PEERS_INSTALL_ONLY": "1"}
    result = subprocess.run(
        ["bash", str(ROOT / "bench" / "peers_check.sh")], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        return "could not be installed: " + (result.stderr.strip().splitlines() or ["?"])[-1]
    return None


def peer_env(emulator: Emulator) -> dict[str, str]:
    """The shim (`.peers/shim/sitecustomize.py`) redirects the peers' hard-coded Close URLs."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.update(PYTHONPATH=str(PEERS / "shim"), CLOSE_BASE_URL=emulator.base_url + "/")
    return env


def start_day(history_days: int) -> str:
    """A start date before the oldest generated email."""
    return (datetime.now(UTC) - timedelta(days=history_days + 2)).strftime("%Y-%m-%d")


def count_records(path: Path, stream: str) -> int:
    """Distinct ids among the RECORD messages of `stream` (Airbyte or Singer format)."""
    ids: set[str] = set()
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if '"RECORD"' not in line[:200]:
                continue
            message = json.loads(line)
            record = message.get("record", {})
            if message.get("stream") == stream:  # Singer
                ids.add(record.get("id"))
            elif record.get("stream") == stream:  # Airbyte
                ids.add(record["data"].get("id"))
    return len(ids)


def timed_run(
    command: list[str], env: dict[str, str], out: Path, timeout: float
) -> tuple[float, str | None]:
    """Run a peer with stdout into `out`; (wall seconds, problem or None)."""
    started = time.perf_counter()
    try:
        with out.open("w") as stdout, out.with_suffix(".err").open("w") as stderr:
            code = subprocess.run(
                command, env=env, stdout=stdout, stderr=stderr, timeout=timeout
            ).returncode
    except subprocess.TimeoutExpired:
        return time.perf_counter() - started, f"timed out after {timeout:.0f} s"
    wall = time.perf_counter() - started
    return wall, None if code == 0 else f"exited with {code} (see {out.with_suffix('.err')})"


def run_airbyte(emulator: Emulator, work: Path, timeout: float) -> PeerResult:
    """`source-close-com read` of `email_activities` (a first sync: no state)."""
    config = work / "airbyte_config.json"
    config.write_text(
        json.dumps({"api_key": "bench", "start_date": start_day(emulator.spec.history_days)})
    )
    catalog = work / "airbyte_catalog.json"
    catalog.write_text(json.dumps(AIRBYTE_CATALOG))
    command = [str(PEERS / "airbyte-venv" / "bin" / "source-close-com"), "read"]
    command += ["--config", str(config), "--catalog", str(catalog)]
    emulator.admin.clear_requests()
    out = work / "airbyte_read.jsonl"
    wall, problem = timed_run(command, peer_env(emulator), out, timeout)
    counts = Counts.read(emulator)
    records = count_records(out, "email_activities")
    out.unlink()  # records with bodies: up to gigabytes
    return PeerResult(AIRBYTE, wall, records, counts, problem)


def run_singer(emulator: Emulator, work: Path, timeout: float) -> PeerResult:
    """`tap-closeio` discover (untimed), then a first sync of `activities`."""
    tap = str(PEERS / "singer-venv" / "bin" / "tap-closeio")
    config = work / "singer_config.json"
    settings = {
        "api_key": "bench",
        "start_date": start_day(emulator.spec.history_days) + "T00:00:00Z",
        "date_window": 15,
        "activities_window_seconds": 86400,
    }
    config.write_text(json.dumps(settings))
    env = peer_env(emulator)
    discovered = subprocess.run(
        [tap, "--config", str(config), "--discover"], env=env, capture_output=True, text=True
    )
    if discovered.returncode != 0:
        return PeerResult(SINGER, 0.0, 0, Counts(0, 0), "discover failed")
    catalog = json.loads(discovered.stdout)
    catalog["streams"] = [s for s in catalog["streams"] if s["tap_stream_id"] == "activities"]
    for entry in catalog["streams"][0]["metadata"]:
        if entry["breadcrumb"] == []:
            entry["metadata"]["selected"] = True
    catalog_path = work / "singer_catalog.json"
    catalog_path.write_text(json.dumps(catalog))
    emulator.admin.clear_requests()
    out = work / "singer_sync.jsonl"
    command = [tap, "--config", str(config), "--catalog", str(catalog_path)]
    wall, problem = timed_run(command, env, out, timeout)
    counts = Counts.read(emulator)
    records = count_records(out, "activities")
    out.unlink()
    return PeerResult(SINGER, wall, records, counts, problem)
