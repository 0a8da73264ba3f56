"""The benchmark's one table: a row per measured run, printed as Markdown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    """One measured run. `requests`/`throttled` are (from the CLI's summary, from the
    emulator's counters); a peer has no summary, so its first value is None."""

    scenario: str
    emails: int | None
    wall_s: float | None
    requests: tuple[int | None, int | None] = (None, None)
    throttled: tuple[int | None, int | None] = (None, None)
    figures: str = ""


HEADERS = ("#", "scenario", "emails", "wall s", "requests (cli / emulator)", "429s (cli / emulator)", "figures")  # fmt: skip


def pair(values: tuple[int | None, int | None]) -> str:
    """`1003 / 1003`, `— / 1003` for a peer, `3 / 4 ≠` when the two counts disagree."""
    cli, emulator = values
    if cli is None and emulator is None:
        return "—"
    text = f"{'—' if cli is None else f'{cli:,}'} / {'—' if emulator is None else f'{emulator:,}'}"
    return text + (" ≠" if cli is not None and emulator is not None and cli != emulator else "")


def cells(number: str, row: Row) -> list[str]:
    """The row's cells as text."""
    return [
        number,
        row.scenario,
        "—" if row.emails is None else f"{row.emails:,}",
        "—" if row.wall_s is None else f"{row.wall_s:,.1f}",
        pair(row.requests),
        pair(row.throttled),
        row.figures,
    ]


def render(header: list[str], rows: list[tuple[str, Row]]) -> str:
    """The header lines, then a Markdown table with aligned columns."""
    table = [list(HEADERS)] + [cells(number, row) for number, row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in table]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join([*header, "", *lines])
