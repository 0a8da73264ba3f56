"""The task callables without Airflow: expected failures are one line, the local folder goes."""

import os
from pathlib import Path

import pytest

from dags.partitions import partitions
from dags.tasks import RunFailed, backfill_task, sync_task
from tests.close.utils import run_cli


def test_a_bad_key_fails_the_task_with_the_products_one_line_and_no_secret(
    make_emulator,  # noqa: ANN001
    sync_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    close = make_emulator(emails=50, api_key="the-right-key")
    monkeypatch.setenv("SOURCES__CLOSE__BASE_URL", close.base_url)
    monkeypatch.setenv("SOURCES__CLOSE__API_KEY", "a-wrong-key")
    target = (os.environ["DESTINATION"], os.environ["DATASET"])
    with pytest.raises(RunFailed) as failed:
        sync_task(os.environ["PIPELINE_NAME"], *target)
    message = str(failed.value)
    assert len(message.splitlines()) == 1 and "API key" in message, message
    assert "a-wrong-key" not in message
    assert failed.value.__cause__ is None and failed.value.__suppress_context__

    (part,) = partitions("b", "2024-01-01", "2024-02-01", 1)
    with pytest.raises(RunFailed, match="API key"):
        backfill_task(**part.as_kwargs(), destination=target[0], dataset=target[1])
    # the local pipeline folders were wiped, and nothing was loaded
    assert not (Path(os.environ["DLT_DATA_DIR"]) / "pipelines" / part.pipeline_name).exists()
    assert not (
        Path(os.environ["DLT_DATA_DIR"]) / "pipelines" / os.environ["PIPELINE_NAME"]
    ).exists()
    code, out, _ = run_cli("status")
    assert code == 0 and "no successful run yet" in out
