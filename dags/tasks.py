"""What the Airflow tasks run: the product's own `run_sync` and `run_backfill`, on a worker.

A worker's local dlt folder is temporary (`PipelineTasksGroup` gives every task process a
fresh one), so each task starts from the state in the destination: it drops whatever a
previous attempt left locally and runs the runner, whose first load restores the state the
last loaded chunk committed, so it walks only what is not loaded yet. The folder is wiped
afterwards.
Nothing here imports Airflow, so the same calls run (and are tested) without it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import dlt

from pipelines.runner import describe_failure, make_pipeline, run_backfill, run_sync
from sources.close.timestamps import parse_timestamp


class RunFailed(Exception):
    """An expected failure (bad key, Close or destination unreachable): one line, no secret."""


@contextmanager
def fresh_pipeline(
    pipeline_name: str, destination: str, dataset: str, wipe_local_data: bool = True
) -> Iterator[dlt.Pipeline]:
    """Yields the pipeline without local state, as PipelineTasksGroup's own runs do.

    Local leftovers of an earlier attempt (state, unloaded packages) are dropped first: the
    destination's state is the one committed with loaded data, and the first `pipeline.run`
    restores it (dlt's `restore_from_destination`) before anything is extracted, so the
    runner resumes from it. Nothing is restored earlier, so that a run failing its checks
    (a bad key) has not even connected to the destination. The runner's `backfill.resumed`
    is read before that first load and so says False on a fresh worker. With
    `wipe_local_data` the local folder is removed afterwards, also on failure.
    """
    pipeline = make_pipeline(pipeline_name, destination, dataset).drop()
    try:
        yield pipeline
    except Exception as exc:  # as the command line does: say expected failures in one line
        message = describe_failure(exc)
        if message is None:
            raise
        raise RunFailed(message) from None
    finally:
        if wipe_local_data:
            pipeline._wipe_working_folder()  # what PipelineTasksGroup does after its runs


def sync_task(
    pipeline_name: str, destination: str, dataset: str, wipe_local_data: bool = True
) -> dict[str, Any]:
    """Runs the nightly `sync` once; returns its run summary."""
    with fresh_pipeline(pipeline_name, destination, dataset, wipe_local_data) as pipeline:
        return run_sync(pipeline)


def backfill_task(
    start: str,
    end: str,
    pipeline_name: str,
    staging_layout: str,
    destination: str,
    dataset: str,
    wipe_local_data: bool = True,
) -> dict[str, Any]:
    """Backfills one partition `[start, end)` (ISO strings); returns its run summary.

    The partition loads through a staging dataset of its own (`staging_layout`, dlt's
    `staging_dataset_name_layout`), set for this run only, so partitions loading into the
    same dataset at once never touch each other's staged rows. Where the destination loads
    through a staging bucket (BigQuery, Snowflake, ...), the bucket's tables are not
    truncated before a load, as PipelineTasksGroup does for its parallel runs: another
    partition may still be loading files from them.
    """
    lo, hi = _moment(start), _moment(end)
    run_config = {
        "destination.staging_dataset_name_layout": staging_layout,
        "destination.truncate_tables_on_staging_destination_before_load": False,
    }
    with dlt.config.values(run_config):
        with fresh_pipeline(pipeline_name, destination, dataset, wipe_local_data) as pipeline:
            return run_backfill(pipeline, lo, hi)


def _moment(value: str) -> datetime:
    parsed = parse_timestamp(value)
    if parsed is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed
