"""Log levels of a command (`--quiet`, `--verbose`) and the redaction of secrets in every log.

dlt logs through its own `dlt` logger (its own stderr handler, level `RUNTIME__LOG_LEVEL`),
urllib3 and psycopg2 through theirs: a filter on one handler would miss the others, so the
redaction sits in the log record factory, which every record of every logger passes.
"""

import json
import logging
import os
import re
from collections.abc import Iterable
from typing import Any

import dlt

REDACTED = "***"
_PATTERNS = [
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1" + REDACTED + "@"),  # DSN passwords
    (
        re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(basic|bearer)\s+)[^\s'\"]+"),
        r"\1" + REDACTED,
    ),  # fmt: skip
]


def known_secrets() -> list[str]:
    """The Close API keys this process may use (config, secrets.toml, organizations)."""
    found = [os.environ.get("SOURCES__CLOSE__API_KEY") or ""]
    try:
        found.append(str(dlt.secrets.get("sources.close.api_key") or ""))
        organizations: Any = dlt.secrets.get("sources.close.organizations") or {}
        if isinstance(organizations, str):
            organizations = json.loads(organizations)
        found += [str(org.get("api_key") or "") for org in dict(organizations).values()]
    except Exception:  # unreadable config is reported by the command itself
        pass
    return [value for value in found if len(value) >= 4]


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value and every DSN password or auth header replaced."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Errors only with `quiet`, debug logs with `verbose`, else warnings; always redacted.

    `CLOSE_SYNC_LOG_LEVEL` still sets the level when neither option is given.
    """
    level = "ERROR" if quiet else "DEBUG" if verbose else None
    level = level or os.environ.get("CLOSE_SYNC_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    # dlt's logger is created later from its runtime config; INFO is its most useful detail
    os.environ["RUNTIME__LOG_LEVEL"] = "ERROR" if quiet else "INFO" if verbose else "WARNING"
    secrets = known_secrets()
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        previous = previous.wrapped  # type: ignore[attr-defined]

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        message = record.getMessage()
        cleaned = redact(message, secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    factory.wrapped = previous  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
