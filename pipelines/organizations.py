"""Several Close organizations synced into one dataset: the `organizations` source option.

    [sources.close.organizations.acme]
    api_key = "api_…"
    [sources.close.organizations.globex]
    api_key = "api_…"
    base_url = "https://api.close.com/api/v1"     # optional

or `SOURCES__CLOSE__ORGANIZATIONS='{"acme": {"api_key": "…"}, …}'`.

Design: one dlt pipeline per organization, `<pipeline_name>__<organization>`, all loading
into the one dataset (and, on DuckDB, the one file `<pipeline_name>.duckdb` unless the
credentials say otherwise). Why not one pipeline with one source per organization: dlt keeps
one state and one load package per pipeline run, so a failing organization would fail the
shared package and hold back the others' cursors, and the source's state (`walk.done`,
`event_cursor`) is keyed by source name, which several sources of one schema would share.
Separate pipelines give each organization its own state (`_dlt_pipeline_state` rows are
keyed by pipeline name), its own client and rate limiter, its own pending packages and its
own crash recovery, with the single-organization code path unchanged; this is dlt's own
pattern for parallel workers on one dataset ("parallel-isolated": distinct pipeline names,
shared dataset). They share the schema name `close`, so `_dlt_version` and `_dlt_loads`
hold rows from every organization's pipeline, identical in shape.

The organizations extract concurrently (one thread each; nearly all of a run is waiting on
Close), but their writes to the destination take turns (`runner.DESTINATION_WRITES`, held
around each load and view refresh): DuckDB admits one writer per file, dlt's merge uses one
`<dataset>_staging` schema per dataset, and concurrent view re-creation conflicts on both
DuckDB and PostgreSQL. Loads are short next to the rate-limited extraction.

The warehouse lookups of an organization (thread and lead deletions, reconciliation,
backfills) see only its own emails (`organization_id`, from Close's `/me/`), so one
organization's reconciliation or backfill can never delete another's rows.
"""

import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dlt

from pipelines import runner
from pipelines.run_command import execute
from pipelines.run_display import RunProgress
from sources.close.client import CloseClient
from sources.close.options import CloseOptionError
from sources.close.settings import DEFAULT_BASE_URL
from warehouse import SqlWarehouse, missing_duckdb_file

logger = logging.getLogger(__name__)

SETTING = "sources.close.organizations"
ENV = "SOURCES__CLOSE__ORGANIZATIONS"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]*$")


@dataclass(frozen=True)
class Organization:
    """One configured Close organization: its name in the config, key and optional URL."""

    name: str
    api_key: str = field(repr=False)  # a secret: never in a repr, log or error
    base_url: str | None = None

    def pipeline_name(self, base: str) -> str:
        """The organization's own dlt pipeline (its own state) within the shared dataset."""
        return f"{base}__{self.name}"

    def source_options(self) -> dict[str, Any]:
        """Arguments of the Close source for this organization."""
        options: dict[str, Any] = {"api_key": self.api_key}
        if self.base_url:
            options["base_url"] = self.base_url
        return options


class OrganizationWarehouse(SqlWarehouse):
    """The warehouse lookups of one organization: only its own emails are visible.

    The organization's id is asked of Close (`/me/`) at the first lookup, that is after the
    source has checked its options, so that a bad option still fails before any request.
    """

    def __init__(self, pipeline: dlt.Pipeline, org: Organization) -> None:
        super().__init__(pipeline)
        self.org = org
        self._organization_id: str | None = None

    @property
    def organization_id(self) -> str:
        """The organization's id in Close (one `/me/` request the first time)."""
        if self._organization_id is None:
            self._organization_id = organization_id(self.org)
        return self._organization_id

    def _query(self, sql: str, *params: Any) -> list[Any]:
        # `{emails}` comes before any other placeholder in every lookup (FROM before WHERE)
        scoped = sql.replace(
            "{emails}", "(SELECT * FROM {emails} WHERE organization_id = %s) AS org_emails", 1
        )
        return super()._query(scoped, self.organization_id, *params)


def configured() -> dict[str, Organization]:
    """The organizations of the `organizations` option by name; empty when it is unset.

    Raises CloseOptionError (one line, naming the setting, never a key) on a bad value.
    """
    raw: Any = dlt.secrets.get(SETTING)
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        raw = _parse_json(raw)
    if not isinstance(raw, dict) or not raw:
        raise CloseOptionError(
            f"setting {SETTING} ({ENV}) must be a table of names to {{api_key, base_url}}"
        )
    return {name: _organization(name, value) for name, value in sorted(raw.items())}


def _parse_json(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        raise CloseOptionError(
            f'setting {SETTING} ({ENV}) is not valid JSON: use \'{{"acme": {{"api_key": "..."}}}}\''
        ) from None


def _organization(name: str, value: Any) -> Organization:
    where = f"setting {SETTING}.{name}"
    if not NAME_PATTERN.match(name):
        raise CloseOptionError(
            f"{where}: the name must be lower-case letters, digits and _ (it names a pipeline)"
        )
    if not isinstance(value, dict):
        raise CloseOptionError(f"{where} must be a table with api_key (and optional base_url)")
    unknown = sorted(set(value) - {"api_key", "base_url"})
    if unknown:
        raise CloseOptionError(f"{where} has unknown keys {', '.join(unknown)}")
    api_key, base_url = value.get("api_key"), value.get("base_url")
    if not isinstance(api_key, str) or not api_key.strip():
        raise CloseOptionError(f"{where}.api_key is missing or empty")
    if base_url is not None and (not isinstance(base_url, str) or not base_url.strip()):
        raise CloseOptionError(f"{where}.base_url must be a URL")
    return Organization(name, api_key.strip(), base_url)


def select(organizations: dict[str, Organization], only: str | None) -> list[Organization]:
    """All configured organizations, or just `only`; CloseOptionError if it is unknown."""
    if only is None:
        return list(organizations.values())
    if not organizations:
        raise CloseOptionError(
            f"--organization {only}: no organizations are configured (setting {SETTING})"
        )
    if only not in organizations:
        known = ", ".join(organizations)
        raise CloseOptionError(f"--organization {only}: not configured (known: {known})")
    return [organizations[only]]


def organization_id(org: Organization) -> str:
    """The id Close gives the organization of `org`'s API key (one `/me/` request)."""
    base_url = org.base_url or dlt.config.get("sources.close.base_url") or DEFAULT_BASE_URL
    found = CloseClient(org.api_key, str(base_url)).organization_id()
    if found is None:
        raise CloseOptionError(f"organization {org.name}: Close's /me/ names no organization")
    return found


class OrganizationFailed(Exception):
    """One organization's run failed with an expected, already one-line, message."""


@dataclass(frozen=True)
class Target:
    """Where the organizations load: the base pipeline name, destination and dataset."""

    pipeline_name: str
    destination: str
    dataset: str

    def pipeline(self, org: Organization) -> dlt.Pipeline:
        """The organization's own pipeline, on the shared dataset, its loads taking turns."""
        name = org.pipeline_name(self.pipeline_name)
        _share_duckdb_file(name, self.destination)
        pipeline = runner.make_pipeline(name, self.destination, self.dataset)
        _serialize_loads(pipeline)
        return pipeline


Job = Callable[[dlt.Pipeline, Organization, "OrganizationWarehouse"], dict[str, Any]]


@dataclass
class Outcome:
    """What one organization's run gave: its summary, or the one-line error, or a bug."""

    org: Organization
    summary: dict[str, Any] | None = None
    error: str | None = None
    bug: BaseException | None = None


def run_each(organizations: list[Organization], where: Target, job: Job) -> list[Outcome]:
    """Runs `job` for every organization at once, each in its own pipeline and thread.

    A failing organization does not stop the others: its outcome carries the one-line
    message (or, for an unexpected exception, the exception, re-raised by the caller once
    all have finished). Returns the outcomes in the order of `organizations`.
    """

    def one(org: Organization) -> Outcome:
        try:
            pipeline = where.pipeline(org)
            warehouse = OrganizationWarehouse(pipeline, org)
            summary = job(pipeline, org, warehouse)
            return Outcome(org, summary={"organization_id": warehouse.organization_id, **summary})
        except OrganizationFailed as exc:
            return Outcome(org, error=str(exc))
        except Exception as exc:
            message = runner.describe_failure(exc)
            if message is None:
                logger.error("organization %s failed unexpectedly", org.name)
                return Outcome(org, bug=exc)
            return Outcome(org, error=message)

    with ThreadPoolExecutor(max_workers=len(organizations) or 1) as pool:
        return list(pool.map(one, organizations))


def combined_summary(command: str, outcomes: list[Outcome]) -> dict[str, Any]:
    """One summary of every organization's run: which failed, then each one's own lines."""
    failed = [o.org.name for o in outcomes if o.summary is None]
    report: dict[str, Any] = {
        "command": command,
        "organizations.succeeded": ", ".join(o.org.name for o in outcomes if o.summary) or None,
        "organizations.failed": ", ".join(failed) or None,
    }
    for outcome in outcomes:
        own = outcome.summary or {"status": "failed", "error": outcome.error or repr(outcome.bug)}
        report[f"organization.{outcome.org.name}"] = own
    return report


def status_each(organizations: list[Organization], where: Target) -> dict[str, Any]:
    """`status` of every organization's pipeline (no API call): `organization.<name>.…`."""
    report: dict[str, Any] = {"organizations": ", ".join(o.name for o in organizations)}
    loaded = None
    for org in organizations:
        pipeline = where.pipeline(org)
        report[f"organization.{org.name}"] = own = runner.status_report(pipeline)
        loaded = pipeline if own.get("rows.emails") else loaded
    if loaded is not None:  # else the destination may not exist: do not create it
        counts = _emails_by_organization(loaded)
        report.update({f"emails_by_organization_id.{key}": n for key, n in counts.items()})
    return report


def _emails_by_organization(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Rows of `emails` per `organization_id` in the shared dataset (none before a load)."""
    if missing_duckdb_file(pipeline):
        return {}  # no DuckDB file yet: do not create one (options are not checked yet)
    rows = SqlWarehouse(pipeline)._query(
        "SELECT organization_id, COUNT(*) FROM {emails} GROUP BY organization_id"
    )
    return {str(org_id): int(n) for org_id, n in rows}


def _share_duckdb_file(pipeline_name: str, destination: str) -> None:
    """Points the organization pipeline `pipeline_name` at the base pipeline's DuckDB file.

    dlt names DuckDB's default file after the pipeline, which would give each organization
    a file of its own instead of one dataset. The value is scoped to this pipeline name
    (dlt looks up `<pipeline_name>.destination…` first), so an explicitly configured file,
    which the unscoped lookup finds, is kept.
    """
    if destination != "duckdb" or dlt.secrets.get("destination.duckdb.credentials"):
        return
    base_name = pipeline_name.rsplit("__", 1)[0]
    path = os.path.abspath(f"{base_name}.duckdb")
    dlt.secrets[f"{pipeline_name}.destination.duckdb.credentials"] = path


def _serialize_loads(pipeline: dlt.Pipeline) -> None:
    """Makes `pipeline`'s loads take `runner.DESTINATION_WRITES` (see the module docstring).

    dlt has no hook around its load step; `Pipeline.run` calls `self.load`, so wrapping the
    bound method of this one pipeline object covers the loads of `run` and of pending data.
    """
    load = pipeline.load

    def locked_load(*args: Any, **kwargs: Any) -> Any:
        with runner.DESTINATION_WRITES:
            return load(*args, **kwargs)

    pipeline.load = locked_load  # type: ignore[method-assign]


def run_command(args: Any, organizations: list[Organization]) -> tuple[dict[str, Any], list[str]]:
    """Runs the command of `args` (`sync`, `backfill` or `status`) for `organizations`.

    Returns the combined report and one line per failed organization. An unexpected
    exception in one organization is re-raised once all the others have finished.
    """
    where = Target(args.pipeline_name, args.destination, args.dataset)
    if args.command == "status":
        return status_each(organizations, where), []
    include_bodies = False if args.no_bodies else None  # None: as configured

    def job(pipeline: dlt.Pipeline, org: Organization, lookups: OrganizationWarehouse) -> Any:
        options = org.source_options()

        def run(progress: RunProgress) -> dict[str, Any]:
            if args.command == "sync":
                return runner.run_sync(
                    pipeline, include_bodies, args.reconcile, lookups, options, progress
                )
            return runner.run_backfill(
                pipeline, args.start, args.end, include_bodies, lookups, options, progress
            )

        failures: list[str] = []
        # Under the organization's own lock and recorded in `sync_runs`; the emails counts
        # of the run are its own (the change counter sees only this pipeline's rows).
        code, summary = execute(
            pipeline,
            args.command,
            run,
            runner.describe_failure,
            wait_s=args.wait,
            mode="off",  # one live display per organization would garble the terminal
            organization=lambda: lookups.organization_id,
            say_error=failures.append,
        )
        if summary is None:
            raise OrganizationFailed(failures[0] if failures else f"exit {code}")
        return summary

    outcomes = run_each(organizations, where, job)
    bugs = [o.bug for o in outcomes if o.bug is not None]
    if bugs:
        raise bugs[0]
    errors = [f"organization {o.org.name}: {o.error}" for o in outcomes if o.error]
    return combined_summary(args.command, outcomes), errors
