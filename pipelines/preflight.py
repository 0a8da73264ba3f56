"""Checks a pipeline's destination settings before anything is extracted or written.

A DuckDB file named like the dataset only fails once dlt queries `close.emails` (DuckDB
names its catalog after the file, so the name is ambiguous), which is after extract has
left a load package behind; a missing or read-only folder fails as late, and so does a
DuckDB setting DuckDB does not know (`global_config`, `local_config`: applied when dlt
first connects). All are known from the settings alone, so they are refused here, before
the first request.
"""

import os
from pathlib import Path
from typing import Any, Literal

import dlt
import duckdb
from dlt.destinations.impl.duckdb.configuration import DuckDbConnectionPool


class DestinationSettingError(ValueError):
    """A destination setting that cannot work. One-line message."""


def check_destination(pipeline: dlt.Pipeline) -> None:
    """Raises `DestinationSettingError` for a destination setting that cannot work."""
    if pipeline.destination.destination_name != "duckdb":
        return
    credentials = pipeline.destination_client().config.credentials
    _check_duckdb_settings(credentials)
    database = getattr(credentials, "database", None)
    if not isinstance(database, str) or not database or database == ":memory:":
        return
    _check_duckdb_file(Path(database), pipeline.dataset_name)


def _check_duckdb_settings(credentials: Any) -> None:
    """Applies the configured DuckDB settings to a throwaway in-memory database with dlt's
    own code for the real one, so that a misspelt name or a bad value is one line now
    instead of a traceback at the first query (and what dlt lets pass, such as a
    `search_path` to a schema not created yet, passes here too)."""
    scopes: dict[Literal["GLOBAL", "SESSION"], str] = {
        "GLOBAL": "global_config",
        "SESSION": "local_config",
    }
    with duckdb.connect() as connection:
        for scope, field in scopes.items():
            for name, value in (getattr(credentials, field, None) or {}).items():
                if name == "custom_user_agent":  # passed to `connect`, not set (dlt does so)
                    continue
                try:  # one at a time, to name the setting that fails
                    DuckDbConnectionPool._apply_config(connection, scope, {name: value})
                except duckdb.Error as exc:
                    reason = " ".join(str(exc).split())
                    raise DestinationSettingError(
                        f"DuckDB setting {name}={value!r} (destination.duckdb.credentials."
                        f"{field}) cannot be used: {reason}; fix or remove it"
                    ) from None


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
