"""Ctrl-C (SIGINT) and SIGTERM: stop the run, say so in one line, exit 130 or 143.

dlt already handles both signals inside its normalize and load steps: it lets the running
jobs finish and then raises `SignalReceivedException` (a `KeyboardInterrupt` carrying the
signal number), wrapped in `PipelineStepFailed`. Outside those steps (the extract, which
runs our walk) SIGTERM would kill the process without unwinding, so `stop_on_signals`
makes both signals raise that same exception there: one path for every interruption.
Nothing is lost either way: a load package is kept until it is loaded, and the cursors
travel inside it (see `pipelines/runner.py`).
"""

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from dlt.common.exceptions import SignalReceivedException

NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
# what dlt logs while it stops on a signal; the run's own line says it once, in plain words
_DLT_SIGNAL_ECHOES = ("Exiting runner due to signal", "Load job pool is successfully drained")


class _SignalEchoFilter(logging.Filter):
    """Drops dlt's warnings about a signal it is stopping on (the CLI prints one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(echo in message for echo in _DLT_SIGNAL_ECHOES)


logging.getLogger("dlt").addFilter(_SignalEchoFilter())


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While open, SIGINT and SIGTERM raise `SignalReceivedException` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set there (e.g. a test runner's worker)
        return
    previous = {signum: signal.getsignal(signum) for signum in NAMES}
    for signum in NAMES:
        signal.signal(signum, _raise)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise SignalReceivedException(signum)


def describe_interrupt(exc: BaseException) -> tuple[str, int]:
    """(one line, exit code 128 + signal) when `exc` is or wraps an interrupt, else ("", 0)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            signum = getattr(seen, "signal_code", signal.SIGINT)
            if signum not in NAMES:  # dlt's pool runner raises -1 when it cannot tell
                signum = signal.SIGINT
            return (
                f"stopped by {NAMES[signum]}: what was loaded is kept and the cursors cover"
                " only that; run the same command again to finish",
                128 + signum,
            )
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "exception", None)
    return "", 0
