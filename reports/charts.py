"""Charts as inline SVG: grouped bars and cumulative lines, every mark carrying its number.

Hand-written on purpose: the page has four plain charts and must render with no network and
no script, and a charting library would mean inlining hundreds of kilobytes of JavaScript
(Chart.js, Vega) or adding a Python dependency (pygal) for what is a few dozen lines of SVG.
Each bar and point has `data-series`, `data-label` and `data-value` attributes and a
`<title>` (the browser's tooltip), so the numbers can be checked in the rendered page.
"""

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 860, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 40
COLORS = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#64748b")


def bar_chart(
    name: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
) -> str:
    """An SVG of grouped vertical bars, one group per label and one bar per series."""
    top = max([v for values in series.values() for v in values] + [0]) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / max(len(labels), 1)
    bar_w = max(group_w * 0.8 / max(len(series), 1), 1.0)
    marks = []
    for s, (key, values) in enumerate(series.items()):
        for i, (label, value) in enumerate(zip(labels, values, strict=True)):
            h = plot_h * value / top
            x = LEFT + i * group_w + group_w * 0.1 + s * bar_w
            marks.append(
                f'<rect class="mark" x="{x:.2f}" y="{TOP + plot_h - h:.2f}" width="{bar_w:.2f}"'
                f' height="{h:.2f}" fill="{COLORS[s % len(COLORS)]}" data-series="{escape(key)}"'
                f' data-label="{escape(label)}" data-value="{value}">'
                f"<title>{escape(label)} · {escape(key)}: {fmt(value)}</title></rect>"
            )
    every = max(1, len(labels) // 8)  # at most about 8 labels on the axis
    ticks = [
        f'<text x="{LEFT + (i + 0.5) * group_w:.1f}" y="{HEIGHT - BOTTOM + 16}"'
        f' text-anchor="middle">{escape(_short(label))}</text>'
        for i, label in enumerate(labels)
        if i % every == 0
    ]
    return _svg(name, top, fmt, marks + ticks, list(series))


def line_chart(name: str, series: Mapping[str, Sequence[tuple[datetime, int]]]) -> str:
    """An SVG of step lines over time, one per series; every point a marked circle."""
    moments = sorted({t for points in series.values() for t, _ in points})
    top = max([v for points in series.values() for _, v in points] + [0]) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    start = moments[0].timestamp() if moments else 0.0
    span = (moments[-1].timestamp() - start) if len(moments) > 1 else 1.0

    def x(t: datetime) -> float:
        return LEFT + plot_w * ((t.timestamp() - start) / span if len(moments) > 1 else 0.5)

    def y(v: float) -> float:
        return TOP + plot_h - plot_h * v / top

    marks = []
    for s, (key, points) in enumerate(series.items()):
        color = COLORS[s % len(COLORS)]
        path = " ".join(f"{x(t):.2f},{y(v):.2f}" for t, v in points)
        marks.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for t, v in points:
            label = t.strftime("%Y-%m-%d %H:%M")
            marks.append(
                f'<circle class="mark" cx="{x(t):.2f}" cy="{y(v):.2f}" r="3" fill="{color}"'
                f' data-series="{escape(key)}" data-label="{label}" data-value="{v}">'
                f"<title>{label} · {escape(key)}: {v:,}</title></circle>"
            )
    if moments:
        for t, anchor in ((moments[0], "start"), (moments[-1], "end")):
            label = t.strftime("%Y-%m-%d %H:%M")
            marks.append(
                f'<text x="{x(t):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="{anchor}">'
                f"{label}</text>"
            )
    return _svg(name, top, lambda v: f"{v:,.0f}", marks, list(series))


def _svg(
    name: str, top: float, fmt: Callable[[float], str], body: list[str], keys: list[str]
) -> str:
    """The chart's frame: y axis with three gridlines, the legend, then `body`."""
    plot_h = HEIGHT - TOP - BOTTOM
    grid = []
    for fraction in (0.0, 0.5, 1.0):
        gy = TOP + plot_h - plot_h * fraction
        grid.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end">{fmt(top * fraction)}</text>'
        )
    legend, lx = [], float(LEFT)
    for i, key in enumerate(keys):
        legend.append(
            f'<rect x="{lx:.0f}" y="{HEIGHT - 14}" width="10" height="10"'
            f' fill="{COLORS[i % len(COLORS)]}"/>'
            f'<text x="{lx + 14:.0f}" y="{HEIGHT - 5}">{escape(key)}</text>'
        )
        lx += 30 + 6.5 * len(key)  # about the width of 11px text
    return (
        f'<svg class="chart" data-chart="{escape(name)}" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" data-max="{top}" data-plot-height="{plot_h}"'
        f' xmlns="http://www.w3.org/2000/svg" role="img">'
        + "".join(grid + legend + body)
        + "</svg>"
    )


def _short(label: str) -> str:
    return label if len(label) <= 14 else label[:13] + "…"
