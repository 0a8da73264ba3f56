"""Airflow DAGs of the Close email sync: `close_emails_sync` (nightly) and `close_emails_backfill`.

Both are built with dlt's `PipelineTasksGroup`, which prepares each task's dlt environment on
the worker: the project folder (`.dlt/`) is the DAGs folder, the data folder a fresh
temporary one per task process, dlt logs go to the task log. Inside the group each task calls
the product's own runner (`run_sync`, `run_backfill` in `pipelines/runner.py`) rather than
`PipelineTasksGroup.add_run`, because `add_run` makes one `pipeline.run(source)` per task and
the product's semantics live in the runner, not in the source alone:

- a first sync or a backfill loads in chunks, several `pipeline.run` calls sharing one
  `WalkRun` (workers, rate limiter, progress), each chunk committed with the ranges it
  completes; one `pipeline.run(close_source())` would load the whole history as a single
  package, so a task killed near the end would start over;
- the runner first finishes a load an interrupted run left behind, refreshes the analyst
  views after each load and returns the run summary (an XCom here);
- `decompose` cannot help: it splits a source into its resources, not into date ranges, and
  the sync's two resources must run in order in one pipeline state (`serialize` would load
  the walk and the change scan as separate packages, the event-log cursor moving without the
  walk's data; `parallel` shares one state between tasks, which dlt warns loses updates;
  `parallel-isolated` gives each resource its own state, so the next run would not find the
  cursors).

The backfill DAG splits `[start, end)` (DAG params) into `partitions` ranges and maps one task
over them (Airflow dynamic task mapping, run in parallel up to `max_active_tis_per_dag`). Each
partition has a pipeline name and a staging dataset of its own, both derived from its range
(`dags/partitions.py`), so a retried task (`retries`) or the same DAG triggered again resumes
from the partition's last loaded chunk, while the nightly pipeline's cursors are never
touched. DuckDB allows one writing process per file, so on DuckDB the partitions run one at a
time; on a warehouse they run side by side (see docs/scale.md for how they share Close's
rate limits).

Settings (environment of the scheduler and workers, read when the DAG file is parsed):
`CLOSE_AIRFLOW_DESTINATION` (default `duckdb`), `CLOSE_AIRFLOW_DATASET` (`close`),
`CLOSE_AIRFLOW_PIPELINE_NAME` (`close_emails`), `CLOSE_AIRFLOW_SCHEDULE` (`0 3 * * *`); each
is also a DAG param, so a manual trigger may override it. The Close API key and the
destination's credentials come from dlt's usual config (environment variables,
`<dags folder>/.dlt/secrets.toml`, or dlt's Airflow variable `dlt_secrets_toml`).
"""

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task
from dlt.helpers.airflow_helper import PipelineTasksGroup

from dags.partitions import partitions
from dags.tasks import backfill_task, sync_task

DESTINATION = os.environ.get("CLOSE_AIRFLOW_DESTINATION", "duckdb")
DATASET = os.environ.get("CLOSE_AIRFLOW_DATASET", "close")
PIPELINE_NAME = os.environ.get("CLOSE_AIRFLOW_PIPELINE_NAME", "close_emails")
SCHEDULE = os.environ.get("CLOSE_AIRFLOW_SCHEDULE", "0 3 * * *")
# a failed run moved no cursor and its retry resumes from the last loaded chunk
DEFAULT_ARGS: dict[str, Any] = {"retries": 2, "retry_delay": timedelta(minutes=5)}
START_DATE = datetime(2024, 1, 1, tzinfo=UTC)

# dlt reads its config from Airflow Variables too; by default every lookup of every setting
# is a Variable request, which took 57 of 60 s of the tasks' time in `dag.test()`. Read only
# the `dlt_secrets_toml` Variable (and its fragments), as dlt does for other vaults.
# PipelineTasksGroup reloads dlt's providers when it is created, so this applies to its tasks.
os.environ.setdefault("PROVIDERS__AIRFLOW_SECRETS__ONLY_TOML_FRAGMENTS", "true")
os.environ.setdefault("PROVIDERS__AIRFLOW_SECRETS__ONLY_SECRETS", "true")


def _target_params() -> dict[str, Param]:
    """Where a run loads: DAG params, defaulting to the environment read at parse time."""
    return {
        "destination": Param(DESTINATION, type="string", description="dlt destination name"),
        "dataset": Param(DATASET, type="string", description="dataset (schema) to load into"),
        "pipeline_name": Param(
            PIPELINE_NAME, type="string", description="dlt pipeline name (keeps the cursors)"
        ),
    }


def build_sync_dag(dag_id: str = "close_emails_sync", schedule: str | None = SCHEDULE) -> DAG:
    """The nightly DAG: one task running `sync` (a first run loads the whole history)."""
    with DAG(
        dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,  # a sync loads everything since the last run: missed nights need no run
        max_active_runs=1,  # two syncs of one pipeline at once would race on its state
        default_args=DEFAULT_ARGS,
        params=_target_params(),
        tags=["close", "dlt"],
        doc_md=__doc__,
    ) as dag:
        with PipelineTasksGroup(PIPELINE_NAME, use_data_folder=False, wipe_local_data=True):

            @task(task_id="sync")
            def sync() -> dict[str, Any]:
                """The run summary of `sync` (emails new, updated, deleted; requests; rows)."""
                params = get_current_context()["params"]
                return sync_task(params["pipeline_name"], params["destination"], params["dataset"])

            sync()
    return dag


def build_backfill_dag(dag_id: str = "close_emails_backfill") -> DAG:
    """The backfill DAG: `[start, end)` split into `partitions`, one mapped task each."""
    params = _target_params()
    params["start"] = Param("2024-01-01", type="string", description="ISO date or datetime")
    params["end"] = Param("2025-01-01", type="string", description="ISO date or datetime")
    params["partitions"] = Param(4, type="integer", minimum=1, description="parallel tasks")
    with DAG(
        dag_id,
        schedule=None,  # run by hand, with params
        start_date=START_DATE,
        catchup=False,
        default_args=DEFAULT_ARGS,
        params=params,
        tags=["close", "dlt"],
        doc_md=__doc__,
    ) as dag:
        group_id = f"{PIPELINE_NAME}_backfill"
        with PipelineTasksGroup(group_id, use_data_folder=False, wipe_local_data=True):

            @task(task_id="plan")
            def plan() -> list[dict[str, str]]:
                """The partitions of the requested range, as keyword arguments of `backfill`."""
                p = get_current_context()["params"]
                base = f"{p['pipeline_name']}_backfill"
                found = partitions(base, p["start"], p["end"], p["partitions"])
                return [partition.as_kwargs() for partition in found]

            # DuckDB: one writing process per file, so its partitions take turns
            @task(task_id="backfill", max_active_tis_per_dag=1 if DESTINATION == "duckdb" else 16)
            def backfill(partition: dict[str, str]) -> dict[str, Any]:
                """The run summary of one partition's backfill."""
                p = get_current_context()["params"]
                return backfill_task(
                    partition["start"],
                    partition["end"],
                    partition["pipeline_name"],
                    partition["staging_layout"],
                    destination=p["destination"],
                    dataset=p["dataset"],
                )

            backfill.expand(partition=plan())
    return dag


sync_dag = build_sync_dag()
backfill_dag = build_backfill_dag()
