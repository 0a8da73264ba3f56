"""Benchmark hook: `CLOSE_SYNC_REQUEST_TRACE=<file>` appends one JSON line per API request.

Each line holds the request's endpoint group, when this client sent it (`sent`, after the
rate limiter's last check), when it had the answer in hand (`seen`), the status (0 when no
answer came) and, for a 429, the wait it read. `bench/waits.py` counts from it the requests
sent into a wait that a 429 had already announced to this client: the hard rule, as the
client sees it. The emulator's log can only tell when a request arrived, so it also counts
requests that were on their way while the 429 was being answered. Unset (always, outside
the benchmark) nothing is recorded. Only times, groups and statuses: no URL, key or data.
"""

import os
import threading
import time
from typing import IO

import orjson

TRACE_ENV = "CLOSE_SYNC_REQUEST_TRACE"


class RequestTrace:
    """Appends request lines to the file named by `CLOSE_SYNC_REQUEST_TRACE`, if set."""

    def __init__(self, path: str | None) -> None:
        self._file: IO[bytes] | None = open(path, "ab", buffering=0) if path else None  # noqa: SIM115
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> "RequestTrace":
        return cls(os.environ.get(TRACE_ENV) or None)

    def record(self, group: str, sent: float, status: int, wait: float) -> None:
        """One request, now answered (or failed): `sent` is its `time.time()` at sending."""
        if self._file is None:
            return
        line = {"group": group, "sent": sent, "seen": time.time(), "status": status}
        if wait:
            line["wait"] = wait
        with self._lock:
            self._file.write(orjson.dumps(line) + b"\n")


TRACE = RequestTrace.from_env()
