"""Checks a pipeline's destination settings before anything is extracted or written.

A DuckDB file named like the dataset only fails once dlt queries `close.emails` (DuckDB
names its catalog after the file, so the name is ambiguous), which is after extract has
left a load package behind; a missing or read-only folder fails as late. Both are known
from the settings alone, so they are refused here, before the first request.
"""

import os
from pathlib import Path

import dlt


class DestinationSettingError(ValueError):
    """A destination setting that cannot work. One-line message."""


def check_destination(pipeline: dlt.Pipeline) -> None:
    """Raises `DestinationSettingError` for a destination setting that cannot work."""
    if pipeline.destination.destination_name != "duckdb":
        return
    credentials = pipeline.destination_client().config.credentials
    database = getattr(credentials, "database", None)
    if not isinstance(database, str) or not database or database == ":memory:":
        return
    _check_duckdb_file(Path(database), pipeline.dataset_name)


def _check_duckdb_file(path: Path, dataset: str) -> None:
    if path.stem.lower() == dataset.lower():
        raise DestinationSettingError(
            f"the DuckDB file {path.name} is named like the dataset {dataset!r}: DuckDB names"
            f" its catalog after the file, so {dataset}.emails would be ambiguous; choose"
            " another file name (DESTINATION__DUCKDB__CREDENTIALS, or --pipeline-name) or"
            " another --dataset"
        )
    folder = path.parent
    if not folder.is_dir():
        raise DestinationSettingError(
            f"the folder of the DuckDB file {path} does not exist; create it or fix"
            " DESTINATION__DUCKDB__CREDENTIALS"
        )
    if path.is_dir():
        raise DestinationSettingError(
            f"the DuckDB file {path} is a folder; fix DESTINATION__DUCKDB__CREDENTIALS"
        )
    writable = os.access(path, os.W_OK) if path.exists() else os.access(folder, os.W_OK)
    if not writable:
        raise DestinationSettingError(
            f"the DuckDB file {path} cannot be written (permission denied); fix the"
            " permissions or DESTINATION__DUCKDB__CREDENTIALS"
        )
