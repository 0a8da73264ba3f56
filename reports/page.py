"""The report page: one self-contained HTML file (inline CSS, SVG and script, no links out)."""

from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from .charts import bar_chart, line_chart
from .data import ReportData

FRESH_HOURS = 26  # as `status --check`'s default: a nightly run plus slack

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 900px; color: #111827 }
h1 { font-size: 22px; margin-bottom: 2px } h2 { font-size: 17px; margin: 28px 0 8px }
.muted { color: #6b7280 } .ok { color: #047857 } .bad { color: #b91c1c }
table { border-collapse: collapse; width: 100%; font-size: 13px }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #e5e7eb }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums }
td.id { font: 11px ui-monospace, monospace }
svg.chart text { font-size: 11px; fill: #374151 } svg.chart .grid { stroke: #e5e7eb }
"""

# Records where the browser drew each mark, so that a test in a real browser can check
# that the drawing (not only the markup) carries the warehouse's numbers.
MEASURE = """
document.addEventListener("DOMContentLoaded", function () {
  var marks = document.querySelectorAll(".mark");
  marks.forEach(function (m) {
    var r = m.getBoundingClientRect(), box = m.ownerSVGElement.getBoundingClientRect();
    m.setAttribute("data-drawn-height", r.height.toFixed(2));
    m.setAttribute("data-drawn-center", (r.top + r.height / 2 - box.top).toFixed(2));
  });
  document.body.setAttribute("data-drawn-marks", String(marks.length));
});
"""


def render(data: ReportData) -> str:
    """The whole page for `data`, as one HTML string."""
    sections = [
        _freshness(data),
        _runs(data),
        _rows_over_time(data),
        _daily_volume(data),
        _sequences(data),
        _waiting(data),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Close email sync · {escape(data.dataset)}</title>"
        f"<style>{STYLE}</style><script>{MEASURE}</script></head><body>"
        f"<h1>Close email sync: {escape(data.dataset)}</h1>"
        f'<p class="muted">Generated {_when(data.generated_at)} from the warehouse.</p>'
        + "".join(sections)
        + "</body></html>\n"
    )


def _freshness(data: ReportData) -> str:
    last = data.last_success_at
    if last is None:
        return '<section id="freshness"><h2>Freshness</h2><p class="bad">No successful load yet.</p></section>'
    age = data.generated_at - last
    fresh = age < timedelta(hours=FRESH_HOURS)
    verdict = "fresh" if fresh else f"stale (older than {FRESH_HOURS} h)"
    return (
        '<section id="freshness"><h2>Freshness</h2>'
        f'<p>Last successful run finished <b data-last-success="{last.isoformat()}">'
        f"{_when(last)}</b>, {_age(age)} ago: "
        f'<span class="{"ok" if fresh else "bad"}">{verdict}</span>.</p></section>'
    )


def _runs(data: ReportData) -> str:
    head = '<section id="runs"><h2>Last runs</h2>'
    if data.runs is None:
        return (
            head
            + '<p class="muted">No run history yet (no <code>sync_runs</code> table).</p></section>'
        )
    if not data.runs:
        return head + '<p class="muted">No run history yet.</p></section>'
    columns = ("started_at", "command", "organization_id", "status", "emails_new",
               "emails_updated", "emails_deleted", "rows_loaded", "error")  # fmt: skip
    return head + _table(columns, data.runs, numeric=columns[4:8]) + "</section>"


def _rows_over_time(data: ReportData) -> str:
    series = {table: points for table, points in data.rows_over_time.items() if points}
    now = {table: points[-1][1] for table, points in series.items()}
    rows = [{"table": table, "rows": n} for table, n in now.items()]
    return (
        '<section id="rows"><h2>Rows per table over time</h2>'
        '<p class="muted">Rows stored now, by the load that wrote them (dlt load time).</p>'
        + line_chart("rows-over-time", series)
        + _table(("table", "rows"), rows, numeric=("rows",))
        + "</section>"
    )


def _daily_volume(data: ReportData) -> str:
    days = [day.isoformat() for day, _, _ in data.daily_volume]
    series = {
        "sent (outgoing)": [sent for _, sent, _ in data.daily_volume],
        "received (incoming)": [received for _, _, received in data.daily_volume],
    }
    return (
        '<section id="volume"><h2>Daily email volume by direction</h2>'
        f'<p class="muted">The last {len(days)} UTC days with email.</p>'
        + bar_chart("daily-volume", days, series)
        + "</section>"
    )


def _sequences(data: ReportData) -> str:
    names = [name for name, _, _, _ in data.sequences]
    rates = [100 * (rate or 0.0) for _, _, _, rate in data.sequences]
    rows = [
        {"sequence": name, "sent": sent, "replied": replied, "reply rate": _percent(rate)}
        for name, sent, replied, rate in data.sequences
    ]
    return (
        '<section id="sequences"><h2>Reply rate by sequence</h2>'
        + bar_chart("reply-rate", names, {"reply rate %": rates}, fmt=lambda v: f"{v:.1f} %")
        + _table(
            ("sequence", "sent", "replied", "reply rate"),
            rows,
            numeric=("sent", "replied", "reply rate"),
        )
        + "</section>"
    )


def _waiting(data: ReportData) -> str:
    rows = [
        {**thread, "waiting": _age(data.generated_at - thread["first_outgoing_at"])}
        for thread in data.waiting_threads
    ]
    columns = ("thread_id", "message_count", "first_outgoing_at", "waiting")
    return (
        '<section id="waiting"><h2>Threads waiting for a reply</h2>'
        '<p class="muted">We wrote, no reply yet; the most recently started first.</p>'
        + (_table(columns, rows, numeric=("message_count",)) if rows else "<p>None.</p>")
        + "</section>"
    )


def _table(
    columns: tuple[str, ...], rows: list[dict[str, Any]], numeric: tuple[str, ...] = ()
) -> str:
    """An HTML table; each cell carries `data-column` for the tests."""
    head = "".join(f'<th class="{"n" if c in numeric else ""}">{escape(c)}</th>' for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{_cell_class(c, numeric)}" data-column="{escape(c)}">'
            f"{escape(_cell(row.get(c)))}</td>"
            for c in columns
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell_class(column: str, numeric: tuple[str, ...]) -> str:
    if column in numeric:
        return "n"
    return "id" if column.endswith("_id") else ""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _when(value)
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _when(moment: datetime) -> str:
    if moment.utcoffset() is None:
        return str(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _age(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.0f} days"


def _percent(rate: float | None) -> str:
    return "" if rate is None else f"{100 * rate:.1f} %"
