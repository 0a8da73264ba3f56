"""How a chunk of emails is written and loaded: file formats and dlt's writer settings.

The source yields pyarrow tables (`sources/close/rows.py`), which dlt's arrow path writes
straight to parquet at extract; normalize then has next to nothing to do. DuckDB loads those
parquet files directly. PostgreSQL gets them rewritten as csv by pyarrow and loads them with
COPY, several times faster than dlt's default INSERT statements; arrow's csv writer counts
rows correctly (dlt 1.31's writer for dict rows counted every row's columns instead, which
once made 2,000 emails look like 78,631 rows); that COPY keeps an empty string apart from
NULL (`postgres_copy.py`, without dlt's FORCE_NULL). Parquet into PostgreSQL would need ADBC
(`adbc-driver-postgresql`), which COPY made unnecessary. dlt's sqlalchemy destination
(MySQL/MariaDB and others) takes parquet or typed-jsonl; parquet keeps the arrow tables as
they are (typed-jsonl would make normalize turn every row back into JSON). Any other
destination gets dlt's preferred format.
"""

import json
import os
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigValueCannotBeCoercedException
from dlt.common.destination import TLoaderFileFormat

from sources.close.rows import marker_rows

DUCKDB_MEMORY_LIMIT = "96MB"
# the sync's own DuckDB connections (analysts' are not touched); a user's settings win
DUCKDB_SETTINGS = {"memory_limit": DUCKDB_MEMORY_LIMIT, "threads": 1}
LOAD_WORKERS = 2
DUCKDB_GLOBAL_CONFIG = "destination.duckdb.credentials.global_config"
LOADER_FILE_FORMAT: dict[str, TLoaderFileFormat] = {
    "duckdb": "parquet",
    "motherduck": "parquet",
    "postgres": "csv",
    "sqlalchemy": "parquet",
}


def loader_file_format(destination_name: str) -> TLoaderFileFormat | None:
    """The file format to load into `destination_name`, or None for dlt's preferred one."""
    return LOADER_FILE_FORMAT.get(destination_name)


def configure() -> None:
    """Sets the dlt configuration of every load (call once, before the first pipeline run).

    - `_dlt_load_id` on the arrow tables, as dlt's JSON path puts it on every `emails` row
      (it tells which load wrote a row; dlt adds the constant column while extracting).
    - One normalize worker: arrow files pass through normalize almost untouched, so extra
      worker processes would only cost their start-up (measured: no gain at 20,000 emails).
    - No gzip on the csv files for PostgreSQL: compressing them at normalize and inflating
      them at COPY took a third of a PostgreSQL chunk (20,000 emails: 2,500 -> 3,600 emails/s).
      Parquet has its own compression, unaffected.
    - The files of a package are deleted once it is loaded (dlt keeps them by default), so
      the uncompressed files do not pile up in the pipeline's folder run after run.
    - Two load workers (dlt's default is 20): a chunk has six table files, and loading them
      all at once oversubscribed two cores with DuckDB's threads (or PostgreSQL's COPYs)
      while the walk's threads fetch on (zero latency, 100,000 emails: DuckDB 18.5-19.6 s
      -> 17.5-18.2 s, PostgreSQL 23.2-25.9 s -> 21.6-23.7 s).
    - dlt extracts the resources one after the other (`fifo`), not taking turns: the change
      scan (`email_changes`) then starts once the walk's resource of the same chunk is done,
      so when the walk ends inside a chunk the scan joins that chunk's load instead of
      costing one more load (round robin starts it before the walk's first batch is out).
    - DuckDB may use at most `DUCKDB_MEMORY_LIMIT` (its default is 80 % of the machine's
      memory; the merges of a 100,000-email first sync then grew the process to 1.4 GB; with
      256 MB to 640 MB, with 128 MB to 420 MB (with `memory.py`), at the same speed, as
      DuckDB spills to disk beyond it; once the walk's buffers held shaped pages, 96 MB
      took the peak from 372 to 337 MB at 100,000 emails and from 418 to 393 MB at
      300,000, at the same speed; 64 MB once failed with "Out of Memory"), and one thread
      per query: dlt loads the tables' files at once, each a query of its own, so with
      DuckDB's default of a thread per core they oversubscribed two cores (zero latency,
      DuckDB: 100,000 emails 19.6-20.0 s -> 18.6-18.7 s, 300,000 60.8 -> 57.7 s). Settings
      given in the destination's `global_config` win.
    """
    dlt.config["normalize.parquet_normalizer.add_dlt_load_id"] = True
    dlt.config["normalize.workers"] = 1
    dlt.config["data_writer.disable_compression"] = True
    dlt.config["load.delete_completed_jobs"] = True
    dlt.config["load.workers"] = LOAD_WORKERS
    dlt.config["extract.next_item_mode"] = "fifo"
    try:  # typed: given as an environment variable it is JSON text, not a table
        given = dlt.config.get(DUCKDB_GLOBAL_CONFIG, dict) or {}
    except ConfigValueCannotBeCoercedException:
        return  # left as given: the door reports it as a bad setting, in one line
    # into the environment, the provider dlt asks first: a value written to `dlt.secrets`
    # would lose to the user's own environment variable, and the cap with it
    env_name = "__".join(DUCKDB_GLOBAL_CONFIG.split(".")).upper()
    os.environ[env_name] = json.dumps({**DUCKDB_SETTINGS, **given})


def loaded_rows(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Rows loaded per table by the pipeline's last run (dlt's own tables left out).

    Counted by dlt's writers at normalize. The child tables' marker rows (an email whose list
    emptied or that was deleted) are rows in the files but never stored, so the ones shaped
    for those loads are subtracted; `emails` keeps counting its deletion markers, as the run
    summary expects (it subtracts the deleted emails itself).
    """
    normalized: Any = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    if not normalized:
        return {}
    counts = {t: n for t, n in normalized.row_counts.items() if not t.startswith("_dlt")}
    for load_id in normalized.loads_ids:
        for table, markers in marker_rows(load_id).items():
            if table in counts:
                counts[table] -= markers
    return counts
