"""The harness's own parts: the peak-memory wrapper, summary parsing and the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.harness import ROOT, parse_summary
from bench.table import Row, pair, render

WRAPPER = str(ROOT / "bench" / "maxrss.py")


def test_wrapper_reports_the_commands_own_peak_memory(tmp_path: Path) -> None:
    big, small = tmp_path / "big.json", tmp_path / "small.json"
    grow = "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); print('ok')"
    out = subprocess.run(
        [sys.executable, WRAPPER, str(big), "--", sys.executable, "-c", grow],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stdout == "ok\n"  # the command's stdout passes through
    subprocess.run([sys.executable, WRAPPER, str(small), "--", sys.executable, "-c", "pass"])
    big_kb = json.loads(big.read_text())["maxrss_kb"]
    small_kb = json.loads(small.read_text())["maxrss_kb"]
    assert big_kb > 200 * 1024 > small_kb  # each report is its own command's, not the maximum


def test_wrapper_passes_the_exit_code_on(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    code = subprocess.call(
        [sys.executable, WRAPPER, str(report), "--", sys.executable, "-c", "raise SystemExit(3)"]
    )
    assert code == 3 and json.loads(report.read_text())["returncode"] == 3


def test_summary_lines_become_a_mapping() -> None:
    stdout = "command: sync\nemails.total: 2000\nloaded_rows.emails: 2000\napi.requests: 114\n"
    summary = parse_summary(stdout + "api.throttled_429: 1\nnot a summary line\n")
    assert summary["api.requests"] == "114" and summary["api.throttled_429"] == "1"
    assert summary["loaded_rows.emails"] == "2000" and "not a summary line" not in summary


def test_table_marks_disagreeing_counts() -> None:
    assert pair((114, 114)) == "114 / 114"
    assert pair((3, 4)) == "3 / 4 ≠"
    assert pair((None, 1_021)) == "— / 1,021"
    text = render(["# header"], [("1", Row("first", 100_000, 52.25, (1003, 1003), (0, 0), "x"))])
    lines = text.splitlines()
    assert lines[0] == "# header" and lines[2].startswith("| # ")
    assert "| 100,000 |" in lines[4] and "52.2" in lines[4] and "1,003 / 1,003" in lines[4]
