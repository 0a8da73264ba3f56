"""Helpers for tests: run the emulator in a thread (`EmulatorServer`) or as a subprocess
(`EmulatorProcess`), and drive its admin API over HTTP (`AdminClient`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from datetime import datetime
from types import TracebackType
from typing import Any

from .emulator import Emulator
from .server import make_server

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class AdminClient:
    """The `/_emulator/` admin API over HTTP, with the in-process API's method names.

    Unknown ids raise KeyError and invalid arguments ValueError, as in process.
    """

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        root = base_url.rstrip("/")
        if root.endswith("/api/v1"):
            root = root[: -len("/api/v1")]
        self.url = root + "/_emulator"
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body, default=_json_default).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            message = json.loads(exc.read() or b"{}").get("error", str(exc))
            if exc.code == 404:
                raise KeyError(message) from None
            raise ValueError(message) from None

    # emails
    def get_email(self, email_id: str) -> dict | None:
        """One email, or None."""
        try:
            return self._call("GET", f"/emails/{email_id}")
        except KeyError:
            return None

    def all_emails(self, fields: list[str] | None = None) -> list[dict]:
        """Every stored email (optionally only `fields` of each)."""
        query = f"?_fields={','.join(fields)}" if fields else ""
        return self._call("GET", f"/emails{query}")

    def create_email(self, **fields: Any) -> dict:
        """Create an email (like POST /activity/email/, defaults filled in)."""
        return self._call("POST", "/emails", fields)

    def update_email(self, email_id: str, **changes: Any) -> dict:
        """Change fields; bumps date_updated and writes an 'updated' event."""
        return self._call("POST", f"/emails/{email_id}/update", changes)

    def delete_email(self, email_id: str) -> None:
        """Delete an email."""
        self._call("DELETE", f"/emails/{email_id}")

    def delete_thread(self, thread_id: str) -> list[str]:
        """Delete a thread and its emails; returns the deleted email ids."""
        return self._call("DELETE", f"/threads/{thread_id}")["deleted"]

    def delete_lead(self, lead_id: str) -> list[str]:
        """Delete a lead and its emails; returns the deleted email ids."""
        return self._call("DELETE", f"/leads/{lead_id}")["deleted"]

    def merge_leads(self, source_lead_id: str, destination_lead_id: str) -> list[str]:
        """Merge two leads; returns the ids of the emails that moved."""
        body = {"source_lead_id": source_lead_id, "destination_lead_id": destination_lead_id}
        return self._call("POST", "/leads/merge", body)["moved"]

    def record_open(self, email_id: str) -> dict:
        """The recipient opened the email."""
        return self._call("POST", f"/emails/{email_id}/open", {})

    def receive_reply(self, email_id: str) -> dict:
        """The contact replied; returns the reply."""
        return self._call("POST", f"/emails/{email_id}/reply", {})

    def schedule_draft(self, email_id: str, when: datetime | str) -> dict:
        """draft -> scheduled at `when`."""
        return self._call("POST", f"/emails/{email_id}/schedule", {"when": when})

    def send_email(self, email_id: str) -> dict:
        """draft/scheduled/outbox -> sent now."""
        return self._call("POST", f"/emails/{email_id}/send", {})

    def remove_attachment(self, email_id: str, index: int = 0) -> dict:
        """Remove one attachment."""
        return self._call("POST", f"/emails/{email_id}/remove_attachment", {"index": index})

    def reassign_lead(self, email_id: str, lead_id: str) -> dict:
        """Move the email to another lead."""
        return self._call("POST", f"/emails/{email_id}/reassign", {"lead_id": lead_id})

    def add_late_email(self, days_old: float, **fields: Any) -> dict:
        """An email that happened `days_old` days ago and appears now."""
        return self._call("POST", "/late_email", {"days_old": days_old, **fields})

    # faults, request log, clock, config
    def set_faults(self, **kwargs: Any) -> dict:
        """Change fault settings; returns them all."""
        return self._call("PUT", "/faults", kwargs)

    def reset_faults(self) -> dict:
        """Remove all faults."""
        return self._call("DELETE", "/faults")

    def faults(self) -> dict:
        """The fault settings and state (e.g. `drift_done`)."""
        return self._call("GET", "/faults")

    def requests(self) -> list[dict]:
        """The request log (oldest first)."""
        return self._call("GET", "/requests")

    def request_counts(self) -> dict[str, Any]:
        """{"total", "by_status", "kept"}: requests since the last clear, however many the log
        still keeps."""
        return self._call("GET", "/requests/counts")

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._call("DELETE", "/requests")

    def advance_clock(self, seconds: float) -> dict:
        """Move the emulator clock forward; returns the clock."""
        return self._call("POST", "/clock", {"advance_seconds": seconds})

    def clock(self) -> dict:
        """{"now", "epoch", "offset_seconds"}."""
        return self._call("GET", "/clock")

    def set_config(self, **kwargs: Any) -> dict:
        """Change config fields; returns the whole config."""
        return self._call("PUT", "/config", kwargs)

    def config(self) -> dict:
        """The whole config."""
        return self._call("GET", "/config")


class EmulatorServer:
    """Serve an `Emulator` over HTTP from a background thread (a context manager)."""

    def __init__(
        self, emulator: Emulator | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.emulator = emulator or Emulator()
        self.httpd = make_server(self.emulator, host, port)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}/api/v1"
        self.admin = AdminClient(self.base_url)
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        """Start serving (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.httpd.serve_forever, name="close-emulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (the emulator itself stays open)."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmulatorProcess:
    """`python -m close_emulator ARGS` in a subprocess on a free port (a context manager)."""

    def __init__(self, args: list[str] | None = None, timeout: float = 600.0) -> None:
        args = list(args or [])
        if "--port" not in args:
            args += ["--port", "0"]
        self._stderr = tempfile.TemporaryFile()
        paths = [_PACKAGE_PARENT, *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "close_emulator", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
        )
        self.base_url = self._wait_for_listening(timeout)
        self.port = int(self.base_url.rsplit(":", 1)[1].split("/")[0])
        self.admin = AdminClient(self.base_url)

    def _wait_for_listening(self, timeout: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()))
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        line = result[0] if result else ""
        if "listening on " not in line:
            self.process.kill()
            self.process.wait()
            self._stderr.seek(0)
            error = self._stderr.read().decode(errors="replace")[-4000:]
            self.stop()
            raise RuntimeError(f"close_emulator did not start: {line!r}\n{error}")
        return line.split("listening on ", 1)[1].split()[0]

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then wait (SIGKILL after `timeout`); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        self._stderr.close()
        return self.process.returncode

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(
        self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {value!r}")
