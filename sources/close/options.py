"""Checks the source's options before any request: one line naming a bad setting."""

import logging
from typing import Any

from .timestamps import parse_timestamp

logger = logging.getLogger(__name__)


class CloseOptionError(ValueError):
    """An option of the source has a value it cannot run with. One-line message."""


def _env(name: str) -> str:
    return f"SOURCES__CLOSE__{name.upper()}"


def _at_least(name: str, value: Any, low: float, whole: bool) -> None:
    kind = "a whole number" if whole else "a number"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < low
        or (whole and value != int(value))
    ):
        raise CloseOptionError(
            f"setting sources.close.{name} ({_env(name)}) is {value!r}: it must be {kind}"
            f" of at least {low:g}"
        )


def check_options(
    concurrency: int,
    chunk_emails: int,
    max_attempts: int,
    request_timeout: float,
    start_date: str,
    event_retention_days: float | None = None,
    window_days: float | None = None,
) -> None:
    """Raises `CloseOptionError` for the first option that cannot work; returns otherwise."""
    _at_least("concurrency", concurrency, 1, whole=True)
    _at_least("chunk_emails", chunk_emails, 0, whole=True)
    _at_least("max_attempts", max_attempts, 1, whole=True)
    _at_least("request_timeout", request_timeout, 0.001, whole=False)
    if event_retention_days is not None:
        _at_least("event_retention_days", event_retention_days, 0.001, whole=False)
    try:
        parse_timestamp(start_date)
    except (ValueError, TypeError) as exc:
        raise CloseOptionError(
            f"setting sources.close.start_date ({_env('start_date')}) is {start_date!r}: use an"
            " ISO 8601 date, e.g. 2020-01-01"
        ) from exc
    if window_days is not None:  # an option of earlier versions: spans are split adaptively
        _at_least("window_days", window_days, 0.001, whole=False)
        logger.warning("setting sources.close.window_days is no longer used: the walk splits"
                       " its ranges by itself")  # fmt: skip
