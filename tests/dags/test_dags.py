"""The Airflow DAGs: they import cleanly, and `dag.test()` runs them against the emulator.

The nightly DAG's first sync must equal Close; then Close and the warehouse drift apart in
ways the event log cannot tell (rows lost in the warehouse, emails deleted in Close, the log
purged), and a two-partition backfill DAG run must bring the warehouse back to Close, each
partition under its own pipeline name and staging dataset, the nightly cursors untouched.
"""

import os
from datetime import datetime, timedelta
from typing import Any

import pytest

from close_emulator import EmulatorServer
from dags.partitions import partitions
from tests.close.utils import assert_warehouse_equals, execute, query, run_cli
from tests.dags.conftest import DAGS_FOLDER, needs_airflow

pytestmark = [needs_airflow, pytest.mark.usefixtures("restore_environ")]


def dag_bag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def status(key: str) -> str:
    code, out, err = run_cli("status")
    assert code == 0, err
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return lines.get(key, "")


def target() -> dict[str, str]:
    """The DAG params that point a run at the test's warehouse."""
    return {
        "destination": os.environ["DESTINATION"],
        "dataset": os.environ["DATASET"],
        "pipeline_name": os.environ["PIPELINE_NAME"],
    }


def run_dag(dag_id: str, retries: int | None = None, **conf: Any) -> Any:
    """`dag.test()` of a DAG as parsed from the DAGs folder; returns the finished DagRun.

    `retries=0` makes a failed task fail the run at once (`dag.test()` would otherwise wait
    out the retry delay).
    """
    bag = dag_bag()
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    for operator in dag.tasks if retries is not None else []:
        operator.retries = retries
    return dag.test(run_conf={**target(), **conf})


def test_the_dags_import_without_errors(airflow_db) -> None:  # noqa: ANN001
    bag = dag_bag()
    assert bag.import_errors == {}
    assert {"close_emails_sync", "close_emails_backfill"} <= set(bag.dag_ids)
    sync = bag.get_dag("close_emails_sync")
    assert [t.task_id for t in sync.tasks] == ["close_emails.sync"]
    assert sync.max_active_runs == 1
    backfill = bag.get_dag("close_emails_backfill")
    assert {t.task_id for t in backfill.tasks} == {
        "close_emails_backfill.plan",
        "close_emails_backfill.backfill",
    }
    assert backfill.params["partitions"] == 4


def test_nightly_dag_then_a_two_partition_backfill_resumed_after_a_failure_end_at_close(
    airflow_db,  # noqa: ANN001
    make_emulator,  # noqa: ANN001
    sync_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a year of evenly spread mail: the first partition gets its first 80 %, several pages
    close: EmulatorServer = make_emulator(
        emails=550, seed=31, history_shape="uniform", history_days=365
    )
    monkeypatch.setenv("SOURCES__CLOSE__BASE_URL", close.base_url)
    emulator = close.emulator

    assert run_dag("close_emails_sync").state == "success"
    assert_warehouse_equals(emulator.all_emails())
    cursors = (status("cursor.date_created"), status("cursor.event_log"))

    now = emulator.clock.now()
    start = now - timedelta(days=366)
    end = start + 1.6 * (now - start)  # the second partition: the last 20 % and the future
    first, second = partitions(
        f"{os.environ['PIPELINE_NAME']}_backfill", start.isoformat(), end.isoformat(), 2
    )
    halves = [_with_activity(emulator.all_emails(), p.start, p.end) for p in (first, second)]
    pages = -(-len(halves[0]) // 100)
    assert pages >= 4, f"the first partition needs several chunks ({len(halves[0])} emails)"
    for half in halves:  # in each partition: rows the warehouse lost, emails Close deleted
        execute(f"DELETE FROM {{ds}}.emails WHERE id IN ('{half[0]['id']}', '{half[1]['id']}')")
        emulator.delete_email(half[-1]["id"])
    emulator.set_config(retention_days=0)  # purge the log: only the backfill can see these

    # chunks of exactly one page (a fast emulator lets them grow up to ten): several chunks
    for name, value in (("CHUNK_EMAILS", "100"), ("CONCURRENCY", "1")):
        monkeypatch.setenv(f"SOURCES__CLOSE__{name}", value)
    monkeypatch.setattr("sources.close.MAX_CHUNK_FACTOR", 1)
    # the worker dies in the first partition's third chunk load, after two were committed
    import pipelines.runner as runner

    real_run, loads = runner._run, []

    def dying_run(pipeline: Any, source: Any) -> dict[str, int]:
        if pipeline.pipeline_name == first.pipeline_name:
            loads.append(pipeline.pipeline_name)
            if len(loads) == 3:
                raise RuntimeError("worker lost")
        return real_run(pipeline, source)

    monkeypatch.setattr(runner, "_run", dying_run)
    conf = {"start": start.isoformat(), "end": end.isoformat(), "partitions": 2}
    assert run_dag("close_emails_backfill", retries=0, **conf).state == "failed"

    emulator.request_log.clear()
    assert run_dag("close_emails_backfill", retries=0, **conf).state == "success"
    assert_warehouse_equals(emulator.all_emails())
    assert (status("cursor.date_created"), status("cursor.event_log")) == cursors

    # each partition listed its own activity_at range, and the failed one only what was left
    lists = [
        (datetime.fromisoformat(e.query["activity_at__gte"]), e.query["activity_at__lt"])
        for e in emulator.request_log.snapshot()
        if e.path.endswith("/activity/email/") and "activity_at__gte" in e.query
    ]
    assert {(lo, datetime.fromisoformat(hi)) for lo, hi in lists} == {
        (first.start, first.end),
        (second.start, second.end),
    }
    assert 0 < sum(lo == first.start for lo, _ in lists) < pages, "it walked it all again"
    # two pipelines with their own state, two staging datasets: nothing shared but the tables
    names = {
        r["pipeline_name"] for r in query("SELECT pipeline_name FROM {ds}._dlt_pipeline_state")
    }
    assert {first.pipeline_name, second.pipeline_name} <= names
    staging = {
        r["schema_name"]
        for r in query(
            "SELECT schema_name FROM information_schema.schemata"
            f" WHERE schema_name LIKE '{os.environ['DATASET']}_staging_%'"
        )
    }
    assert staging == {
        first.staging_layout % os.environ["DATASET"],
        second.staging_layout % os.environ["DATASET"],
    }


def _with_activity(emails: list[dict], lo: datetime, hi: datetime) -> list[dict]:
    """The emails whose activity_at lies in [lo, hi), oldest first."""
    found = [
        e
        for e in emails
        if e["activity_at"] and lo <= datetime.fromisoformat(e["activity_at"]) < hi
    ]
    return sorted(found, key=lambda e: e["activity_at"])
