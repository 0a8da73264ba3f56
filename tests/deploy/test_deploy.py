"""The scheduling examples in deploy/: systemd units pass `systemd-analyze verify`, cron
lines parse and name real commands of the CLI."""

import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from croniter import croniter

from pipelines.close_emails import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent
INSTALLED = "/opt/close-email-sync"
ANALYZE = shutil.which("systemd-analyze")
NO_ANALYZE = "systemd-analyze is not installed (Debian package systemd)"
if ANALYZE is None and os.environ.get("CI", "").lower() == "true":
    raise pytest.UsageError(f"CI=true needs {NO_ANALYZE}")


def installed_copy(tmp_path: Path) -> list[Path]:
    """The units as an install would adjust them: this checkout, this user."""
    units = []
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        text = unit.read_text().replace(f"{INSTALLED}/.venv/bin/python", sys.executable)
        text = text.replace(INSTALLED, str(REPO)).replace(
            "User=closesync", f"User={getpass.getuser()}"
        )
        (tmp_path / unit.name).write_text(text)
        units.append(tmp_path / unit.name)
    return units


def verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, "verify", *map(str, units)], capture_output=True, text=True)


@pytest.mark.skipif(ANALYZE is None, reason=NO_ANALYZE)
def test_systemd_units_verify(tmp_path: Path) -> None:
    units = installed_copy(tmp_path)
    assert {u.suffix for u in units} == {".service", ".timer"}
    done = verify(units)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    broken = tmp_path / "close-emails-sync.timer"
    broken.write_text(
        broken.read_text().replace("OnCalendar=*-*-* 02:15:00 UTC", "OnCalendar=nightly-ish")
    )
    assert verify([broken]).returncode != 0  # the verifier does check what we give it


def cron_jobs() -> list[str]:
    lines = (DEPLOY / "cron" / "close-emails").read_text().splitlines()
    return [
        line
        for line in lines
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]


def test_cron_lines_parse_and_run_real_commands() -> None:
    jobs = cron_jobs()
    assert len(jobs) == 2
    for job in jobs:
        fields = job.split(None, 6)
        schedule, user, command = " ".join(fields[:5]), fields[5], fields[6]
        assert croniter.is_valid(schedule), schedule
        assert user == "closesync"
        cli = command.split("-m pipelines.close_emails ", 1)[1].split(" >")[0]
        args = build_parser().parse_args(cli.split())  # exits 2 on a bad option
        assert args.command in ("sync", "status")
