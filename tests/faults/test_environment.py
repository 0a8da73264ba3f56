"""Where the command finds `.dlt/`, and dlt's telemetry off wherever it runs from."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from close_emulator import EmulatorServer
from pipelines import environment

from .common import ROOT, cli_command, cli_env

KEY = "api_from_secrets_toml_51ac"
# runs the CLI in-process, then prints what dlt resolved for telemetry and whether its
# anonymous tracker was started (it has an endpoint only once started)
PROBE = """
import sys
from pipelines.close_emails import main
code = main(sys.argv[1:])
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.common.runtime import anon_tracker
runtime = Container()[PluggableRunContext].context.runtime_config
print("code", code, "telemetry", runtime.dlthub_telemetry, "tracker", anon_tracker._ANON_TRACKER_ENDPOINT)
"""


def outside_env(close: EmulatorServer, home: Path) -> dict[str, str]:
    """The environment of a user outside the repository: no telemetry setting, own HOME."""
    env = cli_env(close.base_url, HOME=str(home))
    for name in ("RUNTIME__DLTHUB_TELEMETRY", "DLT_PROJECT_DIR", "DLT_GLOBAL_DIR"):
        env.pop(name, None)
    return env


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_run_from_a_subfolder_reads_the_projects_dlt_folder(
    make_emulator,
    sync_env,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=20, seed=6, api_key=KEY)
    project = tmp_path / "project"
    (project / ".dlt").mkdir(parents=True)
    (project / ".dlt" / "secrets.toml").write_text(
        f'[sources.close]\napi_key = "{KEY}"\nbase_url = "{close.base_url}"\n'
    )
    deeper = project / "reports" / "2026"
    deeper.mkdir(parents=True)
    env = outside_env(close, tmp_path)
    env.pop("SOURCES__CLOSE__API_KEY")
    env.pop("SOURCES__CLOSE__BASE_URL")
    result = subprocess.run(
        cli_command(["sync"]), env=env, cwd=deeper, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "emails.total: 20" in result.stdout


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_telemetry_is_off_when_run_outside_the_repository(
    make_emulator,
    sync_env,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    close = make_emulator(emails=20, seed=7)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert ROOT not in outside.parents and not (outside / ".dlt").exists()
    args = cli_command(["sync"])[3:]  # the CLI's arguments, after `python -m module`
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=outside_env(close, tmp_path), cwd=outside,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "code 0 telemetry False tracker None"


def test_a_users_own_telemetry_setting_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RUNTIME__DLTHUB_TELEMETRY", "DLT_PROJECT_DIR", "DLT_GLOBAL_DIR"):
        monkeypatch.delenv(name, raising=False)
    environment.prepare()  # nothing set anywhere: off
    assert os.environ["RUNTIME__DLTHUB_TELEMETRY"] == "false"
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "true")
    environment.prepare()  # set in the environment: kept
    assert os.environ["RUNTIME__DLTHUB_TELEMETRY"] == "true"
    monkeypatch.delenv("RUNTIME__DLTHUB_TELEMETRY")
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text("[runtime]\ndlthub_telemetry = true\n")
    environment.prepare()  # set in the project's config.toml: left to dlt to read
    assert "RUNTIME__DLTHUB_TELEMETRY" not in os.environ


def test_the_project_folder_is_the_nearest_with_dlt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DLT_PROJECT_DIR", raising=False)
    (tmp_path / ".dlt").mkdir()
    (tmp_path / "a" / ".dlt").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    assert environment.find_project_dir(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    assert environment.find_project_dir(tmp_path / "a") == tmp_path / "a"
