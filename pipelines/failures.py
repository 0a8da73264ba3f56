"""Says in one line which destination failure an exception is, or None when it is none.

dlt wraps a destination's driver error (psycopg2's `OperationalError`, DuckDB's
`IOException`, an `OSError` from the file system) in its own exceptions, several levels
deep; the driver's message is the only place that says *which* failure it was, so this
module reads it. Every line ends with what to do. Credentials are never quoted: the lines
are built from the driver's first message line, from which a DSN's password is masked.
"""

import errno
import re

_DSN_PASSWORD_RE = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_LOCK_RE = re.compile(r'Could not set lock on file "([^"]+)"')
_PID_RE = re.compile(r"\(PID (\d+)\)")
_FIX = "check DESTINATION__*__CREDENTIALS"
# DuckDB's own error, and what dlt wraps it in when it happens on connecting
_DUCKDB_WRAPPERS = ("IOException", "DestinationConnectionError", "PermissionException")


def destination_failure(exc: BaseException) -> str | None:
    """One line for a destination that cannot be used (not a query that failed on it)."""
    text = _first_line(exc)
    name = type(exc).__name__
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
    if "No space left" in text or "File too large" in text:
        return f"no space left for the DuckDB file ({text}); free disk space and run again"
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
