"""Says in one line which destination failure an exception is, or None when it is none.

dlt wraps a destination's driver error (psycopg2's `OperationalError`, DuckDB's
`IOException`, an `OSError` from the file system) in its own exceptions, several levels
deep; the driver's message is the only place that says *which* failure it was, so this
module reads it. Every line ends with what to do. Credentials are never quoted: the lines
are built from the driver's first message line, from which a DSN's password is masked.
"""

import errno
import logging
import re

_DSN_PASSWORD_RE = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_LOCK_RE = re.compile(r'Could not set lock on file "([^"]+)"')
_PID_RE = re.compile(r"\(PID (\d+)\)")
_FIX = "check DESTINATION__*__CREDENTIALS"
# DuckDB's own error, and what dlt wraps it in when it happens on connecting
_DUCKDB_WRAPPERS = ("IOException", "DestinationConnectionError", "PermissionException")


_JOB_ECHOES = ("retried in load", "exception in job")


class _JobRetryTracebackFilter(logging.Filter):
    """Drops dlt's logs with a full traceback each time a load job fails or is retried.

    The run then either succeeds or ends in the one line `destination_failure` gives; with
    more logging asked for (`RUNTIME__LOG_LEVEL=INFO` or lower) the warnings stay.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger("dlt").getEffectiveLevel() < logging.WARNING:
            return True
        message = record.getMessage()
        return not any(echo in message for echo in _JOB_ECHOES)


logging.getLogger("dlt").addFilter(_JobRetryTracebackFilter())


def destination_failure(exc: BaseException) -> str | None:
    """One line for a destination that cannot be used (not a query that failed on it)."""
    text = _first_line(exc)
    name = type(exc).__name__
    full = _space_failure(str(exc))
    if full:
        return full
    duckdb = _duckdb_failure(text) if name in _DUCKDB_WRAPPERS else None
    if duckdb:
        return duckdb
    if name == "OperationalError" or name == "DestinationConnectionError":
        return _postgres_failure(text) or (
            f"destination unreachable ({text}); {_FIX}"
            if name == "DestinationConnectionError" or _looks_unreachable(text)
            else None
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return (
            f"no space left to write the load ({exc.strerror}: {exc.filename or 'a load file'});"
            " free disk space (DLT_DATA_DIR, the DuckDB file's folder) and run again"
        )
    if isinstance(exc, PermissionError | IsADirectoryError | NotADirectoryError):
        return (
            f"cannot write {exc.filename or 'a file'} ({exc.strerror}); check the folder's"
            " permissions, DLT_DATA_DIR and DESTINATION__DUCKDB__CREDENTIALS"
        )
    return None


_NO_SPACE = ("No space left on device", "File too large", "Disk quota exceeded")


def _space_failure(message: str) -> str | None:
    """A write that failed for lack of space, wherever dlt wrapped it (a load job, a commit)."""
    for line in message.splitlines():
        if any(marker in line for marker in _NO_SPACE):
            detail = _DSN_PASSWORD_RE.sub(r"\1***@", line.strip())[:300]
            return (
                f"no space left to write the load ({detail}); free disk space (DLT_DATA_DIR,"
                " the DuckDB file's folder, the database server) and run again"
            )
    return None


def _postgres_failure(text: str) -> str | None:
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return f"destination login failed ({_after_fatal(text)}); {_FIX} (user and password)"
    if re.search(r'role "[^"]*" does not exist', text):
        return f"destination login failed: unknown role ({_after_fatal(text)}); {_FIX}"
    if re.search(r'database "[^"]*" does not exist', text):
        return (
            f"destination database unknown ({_after_fatal(text)}); create it or fix the"
            f" database name, {_FIX}"
        )
    return None


def _duckdb_failure(text: str) -> str | None:
    locked = _LOCK_RE.search(text)
    if locked:
        pid = _PID_RE.search(text)
        holder = f" (PID {pid.group(1)})" if pid else ""
        return (
            f"DuckDB file {locked.group(1)} is locked by another process{holder}; wait for it"
            " to finish or stop it, then run again"
        )
    if "Permission denied" in text or "Read-only file system" in text:
        return f"DuckDB file cannot be written ({text}); check DESTINATION__DUCKDB__CREDENTIALS"
    return None


def _looks_unreachable(text: str) -> bool:
    return any(
        marker in text
        for marker in ("could not connect", "Connection refused", "timeout", "could not translate")
    )


def _after_fatal(text: str) -> str:
    return text.split("FATAL:", 1)[-1].strip()


def _first_line(exc: BaseException) -> str:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    return _DSN_PASSWORD_RE.sub(r"\1***@", line)
