"""The fault matrix: each fault the emulator can inject, its expected outcome written down.

Every case runs the sync against a faulty emulator and checks the result against the
emulator's ground truth: either the run completes and the warehouse is exact, or it fails
with the named one-line message, the cursors are where they were, and one more clean run
is exact. `first` cases fault a first sync, `incremental` ones the run after changes (the
event log is read only then). The whole matrix runs on DuckDB: the faults live in the HTTP
layer, which does not depend on the destination. A few representative cases (ACROSS) run
on PostgreSQL too, where a failed load or a retried chunk meets a server's transactions:
ON_POSTGRES in `make test`, all of ACROSS under `make soak`, and all of ACROSS on MariaDB
under `make soak`.
"""

from dataclasses import dataclass, field
from typing import Any

import pytest

from close_emulator import EmulatorServer
from tests.close.test_crash import change_emails
from tests.close.utils import run_cli
from tests.conftest import EVERY_DESTINATION

from .common import assert_exact, cursors, loads_nothing_new

LIST_PATH = "/api/v1/activity/email"
EVENT_PATH = "/api/v1/event"


@dataclass(frozen=True)
class Case:
    faults: dict[str, Any]
    phase: str = "first"  # or "incremental"
    fails_with: str | None = None  # None: completes exactly
    settings: dict[str, str] = field(default_factory=dict)
    soak: bool = False  # only under `make soak` (same family as a `make test` case)


def storm(signal: str | None) -> dict[str, Any]:
    """Two 429s in a row announcing one second in `signal` only (None: no signal at all)."""
    signals = ("storm_ratelimit_header", "storm_retry_after", "storm_body_rate_reset")
    return {"storm_next": 2, "storm_reset_seconds": 1.0, **{s: s == signal for s in signals}}


def server_error(status: int, html: bool) -> dict[str, Any]:
    return {"error_next": 2, "error_status": status, "error_html": html, "path_prefix": LIST_PATH}


FAST_TIMEOUT = {"SOURCES__CLOSE__REQUEST_TIMEOUT": "1"}
MATRIX: dict[str, Case] = {
    "429-RateLimit-header": Case(storm("storm_ratelimit_header"), soak=True),
    "429-Retry-After": Case(storm("storm_retry_after"), soak=True),
    "429-body-rate_reset": Case(storm("storm_body_rate_reset")),
    "429-no-signal": Case(storm(None), soak=True),
    "429-on-event-log": Case({**storm("storm_retry_after"), "path_prefix": EVENT_PATH},
                             phase="incremental", soak=True),
    "429-wait-too-long": Case({"storm_next": 1, "storm_reset_seconds": 900.0},
                              fails_with="asked to wait 900 s"),
    **{f"{status}-json": Case(server_error(status, False), soak=True)
       for status in (500, 502, 503, 504)},
    **{f"{status}-html": Case(server_error(status, True), soak=status != 502)
       for status in (500, 502, 503, 504)},
    "503-until-retries-run-out": Case(
        {"error_rate": 1.0, "error_codes": [503], "path_prefix": LIST_PATH},
        fails_with="failed 2 times in a row", settings={"SOURCES__CLOSE__MAX_ATTEMPTS": "2"}),
    "dropped-connections": Case({"drop_next": 3, "path_prefix": LIST_PATH}, soak=True),
    "stall-past-timeout": Case({"stall_next": 2, "stall_seconds": 2.5, "path_prefix": LIST_PATH},
                               settings=FAST_TIMEOUT, soak=True),
    "stall-until-retries-run-out": Case(
        {"stall_rate": 1.0, "stall_seconds": 2.5, "path_prefix": LIST_PATH},
        fails_with="failed 2 times in a row",
        settings={**FAST_TIMEOUT, "SOURCES__CLOSE__MAX_ATTEMPTS": "2"}, soak=True),
    "truncated-json": Case({"truncate_next": 3, "path_prefix": LIST_PATH}),
    "invalid-json": Case({"invalid_json_next": 3, "path_prefix": LIST_PATH}),
    "empty-200-body": Case({"empty_next": 3, "path_prefix": LIST_PATH}),
    "drift-inserts-and-deletes": Case({"drift_after_page": 2, "drift_insert": 7,
                                       "drift_delete": 5}),
    "drift-deletes-served-rows": Case({"drift_after_page": 2, "drift_delete": 6,
                                       "drift_delete_served": True}, soak=True),
    "events-out-of-order": Case({"events_shuffle": True, "seed": 3}, phase="incremental"),
    "events-consolidated": Case({"events_consolidate": True}, phase="incremental", soak=True),
    "events-dropped-and-5xx": Case({"drop_next": 1, "error_next": 1, "path_prefix": EVENT_PATH},
                                   phase="incremental", soak=True),
    "key-revoked-mid-walk": Case({"unauthorized_after": 3}, fails_with="rejected the API key"),
    "key-revoked-mid-change-scan": Case({"unauthorized_after": 3, "path_prefix": EVENT_PATH},
                                        phase="incremental", fails_with="rejected the API key", soak=True),
}  # fmt: skip


# a 429 storm, a 5xx with an HTML body, dropped connections, truncated JSON, a revoked key
ACROSS = ("429-body-rate_reset", "503-html", "dropped-connections", "truncated-json",
          "key-revoked-mid-walk")  # fmt: skip
ON_POSTGRES = {"503-html"}  # the rest under soak: `.ci/run` must stay under 15 minutes


def cases() -> list[Any]:
    """(destination, case name) pairs, marked `soak` where they run only under `make soak`."""
    params = []
    for destination in EVERY_DESTINATION:
        target = getattr(destination, "values", [destination])[0]
        marks = list(getattr(destination, "marks", []))
        for name, case in MATRIX.items():
            if target == "duckdb":
                quick = not case.soak
            elif name in ACROSS:
                quick = target == "postgres" and name in ON_POSTGRES
            else:
                continue
            soak = [] if quick else [pytest.mark.soak]
            label = getattr(destination, "id", None) or target
            params.append(pytest.param(target, name, marks=marks + soak, id=f"{name}-{label}"))
    return params


@pytest.mark.parametrize("destination, name", cases(), indirect=["destination"])
def test_fault_matrix(
    make_emulator,
    sync_env,
    monkeypatch: pytest.MonkeyPatch,
    name: str,  # noqa: ANN001
) -> None:
    case = MATRIX[name]
    close: EmulatorServer = make_emulator(emails=250, seed=40 + len(name))
    monkeypatch.setenv("SOURCES__CLOSE__CONCURRENCY", "4")
    if case.phase == "incremental":
        assert run_cli("sync", base_url=close.base_url)[0] == 0
        change_emails(close, 1)
    before = cursors()
    for key, value in case.settings.items():
        monkeypatch.setenv(key, value)
    close.emulator.faults.set(**case.faults)

    code, out, err = run_cli("sync", base_url=close.base_url)

    close.emulator.faults.reset()
    if case.fails_with is None:
        assert code == 0, err[-3000:]
        assert_exact(close)
        return  # (that one more run loads nothing new: tests/faults/test_crash_matrix.py)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and case.fails_with in lines[0], err[-3000:]
    assert cursors() == before  # nothing committed that the failed run did not finish
    for key in case.settings:
        monkeypatch.delenv(key)
    loads_nothing_new(close)  # the clean rerun succeeds and is exact
