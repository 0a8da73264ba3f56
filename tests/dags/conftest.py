"""Airflow for the DAG tests: a throwaway AIRFLOW_HOME with a migrated SQLite metadata DB.

Airflow reads its configuration when first imported, so the environment is set here, at
collection, before any test module imports it. Without the `airflow` extra (the dev venv)
the DAG tests skip with one line; `make test` runs them in `.venv-airflow` when it exists,
and with CI=true that venv must exist.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
HAS_AIRFLOW = importlib.util.find_spec("airflow") is not None
AIRFLOW_REASON = (
    "apache-airflow is not installed in this venv: `make airflow-venv` creates .venv-airflow,"
    " where `make test` runs these tests"
)

if not HAS_AIRFLOW and os.environ.get("CI", "").lower() == "true":
    if not (REPO / ".venv-airflow" / "bin" / "python").exists():
        raise pytest.UsageError(f"CI=true needs the Airflow DAG tests: {AIRFLOW_REASON}")

_HOME = tempfile.mkdtemp(prefix="airflow_home_") if HAS_AIRFLOW else ""
if HAS_AIRFLOW:
    os.environ.update(
        {
            "AIRFLOW_HOME": _HOME,
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )

needs_airflow = pytest.mark.skipif(not HAS_AIRFLOW, reason=AIRFLOW_REASON)


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """`airflow db migrate` into the session's AIRFLOW_HOME; yields that folder."""
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    yield Path(_HOME)
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture
def destination() -> str:
    """The DAG tests load into DuckDB (the issue's target for `dag.test()`)."""
    return "duckdb"


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """Puts os.environ back: PipelineTasksGroup sets DLT_PROJECT_DIR/DLT_DATA_DIR globally."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
