"""`report`: the page rendered in headless Chromium carries the warehouse's numbers."""

import os
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.close.utils import execute, query, run_cli, sync, ts

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI", "").lower() == "true":
    raise pytest.UsageError("CI=true needs chromium for the report tests (.ci/run installs it)")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)


class Page(HTMLParser):
    """The rendered DOM: every chart mark's attributes, table cells by column, the body."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.marks: list[dict[str, str]] = []
        self.cells: dict[str, list[str]] = {}
        self.body: dict[str, str] = {}
        self.charts: dict[str, dict[str, str]] = {}
        self._chart = ""
        self._cell: str | None = None
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if tag == "svg" and "data-chart" in a:
            self._chart = a["data-chart"]
            self.charts[self._chart] = a
        if "mark" in a.get("class", "").split():
            self.marks.append({**a, "chart": self._chart})
        if tag == "td":
            self._cell = a.get("data-column")
            self.cells.setdefault(self._cell or "", []).append("")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self.cells[self._cell][-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None

    def values(self, chart: str) -> dict[tuple[str, str], float]:
        return {
            (m["data-series"], m["data-label"]): float(m["data-value"])
            for m in self.marks
            if m["chart"] == chart
        }


def render(tmp_path: Path) -> tuple[str, Page]:
    """Runs `report`, then loads the page in headless Chromium; its HTML and rendered DOM."""
    output = tmp_path / "report.html"
    code, out, err = run_cli("report", "--output", str(output))
    assert code == 0, err
    assert out.strip() == f"report: {output.resolve()}"
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,4000",
         "--virtual-time-budget=3000", "--dump-dom", output.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return output.read_text(encoding="utf-8"), Page(dom)


def expected_daily(emails: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    counts: Counter[tuple[str, str]] = Counter()
    for email in emails:
        day = ts(email.get("activity_at"))
        if day is None:
            continue
        label = day.astimezone(UTC).date().isoformat()
        counts[("sent (outgoing)", label)] += (
            email["direction"] == "outgoing" and email["status"] == "sent"
        )
        counts[("received (incoming)", label)] += email["direction"] == "incoming"
    last_days = sorted({label for _, label in counts})[-60:]
    return {key: float(n) for key, n in counts.items() if key[1] in last_days}


def expected_reply_rates(emails: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    sent: Counter[str] = Counter()
    replied: Counter[str] = Counter()
    for email in emails:
        if email.get("sequence_id") and email["status"] == "sent":
            sent[email["sequence_name"]] += 1
            replied[email["sequence_name"]] += bool(email.get("has_reply"))
    return {("reply rate %", name): 100 * replied[name] / sent[name] for name in sent}


def assert_drawn_to_scale(page: Page, chart: str) -> None:
    """Each bar's height as the browser drew it is its value over the chart's maximum."""
    top, plot = float(page.charts[chart]["data-max"]), float(page.charts[chart]["data-plot-height"])
    bars = [m for m in page.marks if m["chart"] == chart]
    assert bars
    for bar in bars:
        assert abs(float(bar["data-drawn-height"]) - plot * float(bar["data-value"]) / top) < 0.6


@needs_chromium
def test_report_rendered_in_chromium_carries_the_warehouse_numbers(
    make_emulator,
    sync_env,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=300, seed=5)
    sync(close.base_url)
    emails = close.emulator.all_emails()
    html, page = render(tmp_path)
    # self-contained: no link, script or stylesheet from anywhere else
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and " src=" not in html
    assert int(page.body["data-drawn-marks"]) == len(page.marks) > 0  # its script ran

    assert page.values("daily-volume") == expected_daily(emails)
    assert_drawn_to_scale(page, "daily-volume")
    rates = page.values("reply-rate")
    assert rates.keys() == expected_reply_rates(emails).keys()
    for key, rate in expected_reply_rates(emails).items():
        assert rates[key] == pytest.approx(rate)
    assert_drawn_to_scale(page, "reply-rate")

    rows = page.values("rows-over-time")
    for table in ("emails", "emails__recipients", "emails__opens"):
        last = max((label, value) for (series, label), value in rows.items() if series == table)
        assert last[1] == query(f"SELECT COUNT(*) AS n FROM {{ds}}.{table}")[0]["n"]
    assert max(v for (s, _), v in rows.items() if s == "emails") == len(emails)

    waiting = query(
        "SELECT thread_id FROM {ds}.email_threads WHERE first_outgoing_at <= CURRENT_TIMESTAMP"
        " AND NOT replied ORDER BY first_outgoing_at DESC, thread_id LIMIT 15"
    )
    assert page.cells["thread_id"] == [r["thread_id"] for r in waiting] and waiting
    runs = query("SELECT status, emails_new FROM {ds}.sync_runs")  # the sync's own row
    assert page.cells["status"] == ["succeeded"] and runs[0]["status"] == "succeeded"
    assert page.cells["emails_new"] == [f"{runs[0]['emails_new']:,}"] == [f"{len(emails):,}"]


@needs_chromium
def test_report_shows_the_last_runs_from_sync_runs(
    make_emulator,
    sync_env,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=40, seed=3)
    sync(close.base_url)
    finished = datetime.now(UTC) - timedelta(hours=3)
    execute("DELETE FROM {ds}.sync_runs")  # the sync's own row: replaced by two known ones
    for n, (status, error, new) in enumerate(
        [("succeeded", "NULL", 1234), ("failed", "'boom'", 0)]
    ):
        at = (finished + timedelta(hours=n)).isoformat()
        execute(
            "INSERT INTO {ds}.sync_runs (run_id, pipeline_name, organization_id, command,"
            " started_at, finished_at, status, error, emails_new, emails_updated,"
            " emails_deleted, rows_loaded, api_requests, api_throttled, _dlt_load_id, _dlt_id)"
            f" VALUES ('r{n}', 'p', 'orga_1', 'sync', '{at}', '{at}', '{status}', {error}, {new},"
            f" 5, 0, 99, 7, 0, 'l{n}', 'd{n}')"
        )
    html, page = render(tmp_path)
    assert page.cells["status"] == ["failed", "succeeded"]  # newest first
    assert page.cells["emails_new"] == ["0", "1,234"] and page.cells["error"] == ["boom", ""]
    assert "No run history yet" not in html
    assert "3.0 h" in html and "fresh" in html  # freshness from the last succeeded run


def test_report_without_a_warehouse_is_one_line_and_creates_nothing(
    sync_env,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    code, out, err = run_cli("report", "--output", str(tmp_path / "r.html"))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "run sync first" in err
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "warehouse.duckdb").exists()
