"""The `report` command: one self-contained HTML page built from the warehouse.

`data.py` reads the numbers (plain SQL, DuckDB and PostgreSQL), `charts.py` draws them as
inline SVG, `page.py` lays out the page. Needs no API key and never calls Close; the page
fetches nothing when it is viewed.
"""

import os
from pathlib import Path

import dlt

from warehouse import missing_duckdb_file

from .data import ReportData, read_report_data
from .page import render

DEFAULT_OUTPUT = "close_report.html"

__all__ = [
    "DEFAULT_OUTPUT",
    "ReportData",
    "ReportError",
    "read_report_data",
    "render",
    "write_report",
]


class ReportError(Exception):
    """The report cannot be built (no warehouse yet). One-line message."""


def write_report(pipeline: dlt.Pipeline, output: str | os.PathLike[str] = DEFAULT_OUTPUT) -> Path:
    """Writes the report of `pipeline`'s dataset to `output`; returns the file's path.

    Raises ReportError when the dataset holds no load yet (nothing is created then).
    """
    if database := missing_duckdb_file(pipeline):
        raise ReportError(
            f"no warehouse at {database}: run sync first, or set DESTINATION__DUCKDB__CREDENTIALS"
        )
    with pipeline.sql_client() as sql:
        if not sql.has_dataset():
            raise ReportError(f"dataset {pipeline.dataset_name} does not exist: run sync first")
        data = read_report_data(sql)
    path = Path(output)
    path.write_text(render(data), encoding="utf-8")
    return path
