"""Several Close organizations in one dataset: two emulators, each its own organization."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from close_emulator import EmulatorServer
from pipelines import organizations
from sources.close.options import CloseOptionError
from tests.close.test_crash import ROOT
from tests.close.utils import assert_warehouse_equals, query, run_cli

ACME_KEY = "api_acme_key_DO_NOT_LEAK_71c0"
GLOBEX_KEY = "api_globex_key_DO_NOT_LEAK_93d2"


@pytest.fixture
def two_orgs(make_emulator, sync_env, monkeypatch) -> dict[str, EmulatorServer]:  # noqa: ANN001
    """acme (seed 1) and globex (seed 2), each accepting only its own key, both configured."""
    servers = {
        "acme": make_emulator(emails=100, seed=1, api_key=ACME_KEY),
        "globex": make_emulator(emails=60, seed=2, api_key=GLOBEX_KEY),
    }
    for server in servers.values():
        # each run's requests then span most of a second, not a quarter: the two still overlap
        # when a busy machine (four test workers on two cores) starts one thread late
        server.emulator.faults.set(latency_ms=50)
    config = {
        "acme": {"api_key": ACME_KEY, "base_url": servers["acme"].base_url},
        "globex": {"api_key": GLOBEX_KEY, "base_url": servers["globex"].base_url},
    }
    monkeypatch.setenv("SOURCES__CLOSE__ORGANIZATIONS", json.dumps(config))
    monkeypatch.delenv("SOURCES__CLOSE__API_KEY")  # the organizations' keys are the only ones
    return servers


def _org_lines(out: str, name: str, prefix: str) -> dict[str, str]:
    pattern = rf"^organization\.{name}\.({prefix}[^:]*): (.*)$"
    return dict(re.findall(pattern, out, re.M))


def test_two_organizations_sync_concurrently_into_one_dataset_without_mixing(
    two_orgs: dict[str, EmulatorServer],
) -> None:
    acme, globex = two_orgs["acme"].emulator, two_orgs["globex"].emulator
    assert acme.world.organization_id != globex.world.organization_id
    code, out, err = run_cli("sync")
    assert code == 0, err
    assert_warehouse_equals(acme.all_emails() + globex.all_emails())
    owners = {r["id"]: r["organization_id"] for r in query("SELECT * FROM {ds}.emails")}
    for emulator in (acme, globex):
        for email in emulator.all_emails():
            assert owners[email["id"]] == emulator.world.organization_id
    assert "organizations.succeeded: acme, globex" in out, out
    assert f"organization.acme.emails.new: {len(acme.all_emails())}" in out
    assert f"organization.globex.organization_id: {globex.world.organization_id}" in out
    # concurrently: each organization's first request came before the other's last
    a_log, g_log = list(acme.request_log), list(globex.request_log)
    assert a_log[0].time <= g_log[-1].time and g_log[0].time <= a_log[-1].time
    # each on its own key and limiter: every request answered, none throttled
    assert set(acme.request_log.counts()["by_status"]) == {"200"}
    assert set(globex.request_log.counts()["by_status"]) == {"200"}

    code, out, _ = run_cli("status")
    assert code == 0
    for name in ("acme", "globex"):
        assert _org_lines(out, name, "cursor.date_created"), out
    for emulator in (acme, globex):
        org_id, stored = emulator.world.organization_id, len(emulator.all_emails())
        assert f"emails_by_organization_id.{org_id}: {stored}" in out

    # one organization alone, reconciled: acme's Close has none of globex's emails, and its
    # reconciliation sees only acme's rows, so globex's stay
    globex.request_log.clear()
    code, out, err = run_cli("sync", "--organization", "acme", "--reconcile")
    assert code == 0, err
    assert "organizations.succeeded: acme" in out and "globex" not in out
    assert "organization.acme.reconciled_because: reconciliation was requested" in out
    assert globex.request_log.counts()["total"] == 0
    assert_warehouse_equals(acme.all_emails() + globex.all_emails())


def test_a_revoked_key_fails_its_organization_alone(
    two_orgs: dict[str, EmulatorServer],
) -> None:
    acme, globex = two_orgs["acme"].emulator, two_orgs["globex"].emulator
    assert run_cli("sync")[0] == 0
    globex_before = globex.all_emails()
    status_before = _org_lines(run_cli("status")[1], "globex", "cursor")
    for emulator in (acme, globex):
        lead = emulator.all_emails()[0]["lead_id"]
        emulator.create_email(lead_id=lead, status="draft")
        emulator.record_open(emulator.all_emails()[5]["id"])
    globex.set_config(api_key="api_globex_rotated")  # the configured key is revoked

    code, out, err = run_cli("sync")
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: organization globex:") and "API key" in err, err
    assert "organizations.failed: globex" in out and "organizations.succeeded: acme" in out
    assert GLOBEX_KEY not in out + err and ACME_KEY not in out + err
    # acme complete and exact; globex as it was after its last successful run
    assert_warehouse_equals(acme.all_emails() + globex_before)
    assert _org_lines(run_cli("status")[1], "globex", "cursor") == status_before


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"Acme Inc": {"api_key": "k"}}', "lower-case letters"),
        ('{"acme": {"base_url": "http://x"}}', "acme.api_key is missing"),
        ('{"acme": {"api_key": "k", "token": "t"}}', "unknown keys token"),
        ('["acme"]', "must be a table"),
    ],
)
def test_bad_organizations_settings_are_one_line(monkeypatch, value: str, message: str) -> None:  # noqa: ANN001
    monkeypatch.setenv("SOURCES__CLOSE__ORGANIZATIONS", value)
    with pytest.raises(CloseOptionError, match=message) as error:
        organizations.configured()
    assert "\n" not in str(error.value) and '"k"' not in str(error.value)


def test_organization_option_names_a_configured_one(
    two_orgs: dict[str, EmulatorServer],
) -> None:
    code, _, err = run_cli("sync", "--organization", "initech")
    assert code == 1 and err.strip() == (
        "error: --organization initech: not configured (known: acme, globex)"
    )
    assert two_orgs["acme"].emulator.request_log.counts()["total"] == 0
    code, out, _ = run_cli("status")
    assert code == 0 and out.count("no successful run yet") == 2, out


def test_a_bad_source_option_fails_every_organization_before_any_request(
    two_orgs: dict[str, EmulatorServer],
    monkeypatch,  # noqa: ANN001
) -> None:
    monkeypatch.setenv("SOURCES__CLOSE__CONCURRENCY", "0")
    code, out, err = run_cli("sync")
    assert code == 1
    lines = err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["error"] * 2, err
    assert all("sources.close.concurrency" in line for line in lines), err
    assert "organizations.failed: acme, globex" in out
    for server in two_orgs.values():
        assert server.emulator.request_log.counts()["total"] == 0
    code, out, _ = run_cli("status")
    assert code == 0 and out.count("no successful run yet") == 2, out


@pytest.mark.parametrize("destination", ["duckdb"])  # about configuration, not the destination
def test_organizations_from_secrets_toml_in_a_real_process(
    two_orgs: dict[str, EmulatorServer], tmp_path: Path
) -> None:
    """The documented form, `[sources.close.organizations.<name>]` in .dlt/secrets.toml."""
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "secrets.toml").write_text(
        f'[sources.close.organizations.acme]\napi_key = "{ACME_KEY}"\n'
        f'base_url = "{two_orgs["acme"].base_url}"\n'
        f'[sources.close.organizations.globex]\napi_key = "{GLOBEX_KEY}"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "SOURCES__CLOSE__ORGANIZATIONS"}
    command = [sys.executable, "-m", "pipelines.close_emails", "sync", "--organization", "acme",
               "--destination", env["DESTINATION"], "--dataset", env["DATASET"],
               "--pipeline-name", env["PIPELINE_NAME"]]  # fmt: skip
    done = subprocess.run(
        command, env={**env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "organizations.succeeded: acme" in done.stdout
    assert ACME_KEY not in done.stdout + done.stderr
    assert_warehouse_equals(two_orgs["acme"].emulator.all_emails())
