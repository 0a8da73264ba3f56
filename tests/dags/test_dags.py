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


def run_dag(dag_id: str, **conf: Any) -> Any:
    """`dag.test()` of a DAG as parsed from the DAGs folder; returns the finished DagRun."""
    bag = dag_bag()
    assert not bag.import_errors, bag.import_errors
    run = bag.get_dag(dag_id).test(run_conf={**target(), **conf})
    return run


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


def test_nightly_dag_then_a_two_partition_backfill_end_at_close(
    airflow_db,  # noqa: ANN001
    make_emulator,  # noqa: ANN001
    sync_env: dict[str, str],
) -> None:
    close: EmulatorServer = make_emulator(emails=400, seed=31)
    os.environ["SOURCES__CLOSE__BASE_URL"] = close.base_url
    emulator = close.emulator

    nightly = run_dag("close_emails_sync")
    assert nightly.state == "success"
    assert_warehouse_equals(emulator.all_emails())
    cursors = (status("cursor.date_created"), status("cursor.event_log"))

    now = emulator.clock.now()
    start, end = now - timedelta(days=300), now - timedelta(days=100)
    middle = start + (end - start) / 2
    halves = [
        _with_activity(emulator.all_emails(), lo, hi) for lo, hi in ((start, middle), (middle, end))
    ]
    assert all(len(half) > 10 for half in halves)
    for half in halves:  # in each partition: rows the warehouse lost, emails Close deleted
        execute(f"DELETE FROM {{ds}}.emails WHERE id IN ('{half[0]['id']}', '{half[1]['id']}')")
        emulator.delete_email(half[2]["id"])
    emulator.set_config(retention_days=0)  # purge the log: only the backfill can see these
    emulator.request_log.clear()

    backfill = run_dag(
        "close_emails_backfill", start=start.isoformat(), end=end.isoformat(), partitions=2
    )
    assert backfill.state == "success"
    assert_warehouse_equals(emulator.all_emails())
    assert (status("cursor.date_created"), status("cursor.event_log")) == cursors

    # each partition listed its own activity_at range, and only that
    ranges = {
        (entry.query.get("activity_at__gte"), entry.query.get("activity_at__lt"))
        for entry in emulator.request_log.snapshot()
        if entry.path.endswith("/activity/email/") and "activity_at__gte" in entry.query
    }
    assert {(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in ranges} == {
        (start, middle),
        (middle, end),
    }
    # two pipelines with their own state, two staging datasets: nothing shared but the tables
    names = {
        r["pipeline_name"] for r in query("SELECT pipeline_name FROM {ds}._dlt_pipeline_state")
    }
    backfills = {n for n in names if n.startswith(f"{os.environ['PIPELINE_NAME']}_backfill_")}
    assert len(backfills) == 2
    staging = {
        r["schema_name"]
        for r in query(
            "SELECT schema_name FROM information_schema.schemata"
            f" WHERE schema_name LIKE '{os.environ['DATASET']}_staging_%'"
        )
    }
    assert len(staging) == 2


def _with_activity(emails: list[dict], lo: datetime, hi: datetime) -> list[dict]:
    """The emails whose activity_at lies in [lo, hi), oldest first."""
    found = [
        e
        for e in emails
        if e["activity_at"] and lo <= datetime.fromisoformat(e["activity_at"]) < hi
    ]
    return sorted(found, key=lambda e: e["activity_at"])
