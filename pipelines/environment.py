"""Where dlt looks for `.dlt/`, and dlt's telemetry off by default, set before dlt starts.

dlt reads its settings folder from the working directory (or `DLT_PROJECT_DIR`) once, when
its run context is first made, which happens as soon as anything sets a config value; so
`prepare()` must run before `pipelines.runner` is imported. dlt's anonymous telemetry is
on unless a config file says otherwise, and the project's `.dlt/config.toml` is not read
when the command runs outside the project: a tool that handles a CRM's mail must send
nothing anywhere the user did not ask for, so it is switched off unless the user set it.
"""

import os
import tomllib
from pathlib import Path

TELEMETRY_ENV = "RUNTIME__DLTHUB_TELEMETRY"


def prepare() -> None:
    """Points dlt at the nearest `.dlt/` and turns telemetry off unless the user set it."""
    project = find_project_dir()
    # the working directory itself dlt finds anyway; not setting it there keeps child
    # processes (which may run elsewhere) looking in their own folder
    if project is not None and project != Path.cwd() and "DLT_PROJECT_DIR" not in os.environ:
        os.environ["DLT_PROJECT_DIR"] = str(project)
    if TELEMETRY_ENV not in os.environ and not _telemetry_configured(project):
        os.environ[TELEMETRY_ENV] = "false"


def find_project_dir(start: Path | None = None) -> Path | None:
    """The nearest folder at or above `start` (the cwd) holding `.dlt/`, or None."""
    if "DLT_PROJECT_DIR" in os.environ:
        return Path(os.environ["DLT_PROJECT_DIR"])
    here = start or Path.cwd()
    for folder in [here, *here.parents]:
        if (folder / ".dlt").is_dir():
            return folder
    return None


def _telemetry_configured(project: Path | None) -> bool:
    """Whether the project's or the global dlt config sets `runtime.dlthub_telemetry`."""
    global_dir = Path(os.environ.get("DLT_GLOBAL_DIR", Path.home() / ".dlt"))
    folders = [global_dir] + ([project / ".dlt"] if project else [])
    for folder in folders:
        try:
            config = tomllib.loads((folder / "config.toml").read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if "dlthub_telemetry" in (config.get("runtime") or {}):
            return True
    return False
