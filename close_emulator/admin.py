"""The admin HTTP API under `/_emulator/`: no auth, no rate limit, no faults, not logged.

It exposes the in-process `Emulator` API over HTTP (see README.md for the endpoint list).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .api import Response, json_response, project
from .clock import fmt

if TYPE_CHECKING:
    from .emulator import Emulator

# POST /_emulator/emails/{id}/{action}: action -> Emulator method (the JSON body: its kwargs)
ACTIONS = {
    "update": "update_email",
    "open": "record_open",
    "reply": "receive_reply",
    "schedule": "schedule_draft",
    "send": "send_email",
    "remove_attachment": "remove_attachment",
    "reassign": "reassign_lead",
}


def handle(emu: Emulator, method: str, path: str, params: dict[str, str], body: bytes) -> Response:
    """Answer one admin request; KeyError means 404 and ValueError/TypeError 400."""
    parts = [part for part in path.split("/") if part][1:]
    try:
        data = json.loads(body) if body.strip() else {}
        if not isinstance(data, dict):
            raise ValueError("the JSON body must be an object")
        return _route(emu, method, parts, params, data)
    except KeyError as exc:
        return json_response(404, {"error": f"not found: {exc.args[0] if exc.args else ''}"})
    except (ValueError, TypeError) as exc:
        return json_response(400, {"error": str(exc)})


def _route(
    emu: Emulator, method: str, parts: list[str], params: dict[str, str], data: dict[str, Any]
) -> Response:
    match method, parts:
        case "GET", ["emails"]:
            return Response(200, _stream_emails(emu, params.get("_fields")))
        case "POST", ["emails"]:
            return json_response(200, emu.create_email(**data))
        case "GET", ["emails", email_id]:
            email = emu.get_email(email_id)
            if email is None:
                raise KeyError(email_id)
            return json_response(200, email)
        case "DELETE", ["emails", email_id]:
            emu.delete_email(email_id)
            return json_response(200, {"deleted": [email_id]})
        case "POST", ["emails", email_id, action] if (
            action in ACTIONS or action in ACTIONS.values()
        ):
            name = ACTIONS.get(action, action)
            return json_response(200, getattr(emu, name)(email_id, **data))
        case "POST", ["late_email"]:
            return json_response(200, emu.add_late_email(**data))
        case "DELETE", ["threads", thread_id]:
            return json_response(200, {"deleted": emu.delete_thread(thread_id)})
        case "DELETE", ["leads", lead_id]:
            return json_response(200, {"deleted": emu.delete_lead(lead_id)})
        case "POST", ["leads", "merge"]:
            return json_response(200, {"moved": emu.merge_leads(**data)})
        case "GET", ["faults"]:
            return json_response(200, emu.faults.as_dict())
        case "PUT" | "POST" | "PATCH", ["faults"]:
            emu.faults.set(**data)
            return json_response(200, emu.faults.as_dict())
        case "DELETE", ["faults"]:
            emu.faults.reset()
            return json_response(200, emu.faults.as_dict())
        case "GET", ["requests"]:
            return json_response(200, [entry.as_dict() for entry in emu.request_log])
        case "GET", ["requests", "counts"]:
            return json_response(200, emu.request_log.counts())
        case "DELETE", ["requests"]:
            emu.request_log.clear()
            return json_response(200, {})
        case "GET", ["clock"]:
            return json_response(200, _clock(emu))
        case "POST" | "PUT", ["clock"]:
            if "offset_seconds" in data:
                emu.clock.set_offset(float(data["offset_seconds"]))
            emu.clock.advance(float(data.get("advance_seconds", 0)))
            return json_response(200, _clock(emu))
        case "GET", ["config"]:
            return json_response(200, dataclasses.asdict(emu.config))
        case "PUT" | "POST" | "PATCH", ["config"]:
            emu.set_config(**data)
            return json_response(200, dataclasses.asdict(emu.config))
    raise KeyError("/_emulator/" + "/".join(parts))


def _clock(emu: Emulator) -> dict[str, Any]:
    now = emu.clock.now_us()
    return {"now": fmt(now), "epoch": now / 1e6, "offset_seconds": emu.clock.offset}


def _stream_emails(emu: Emulator, fields: str | None) -> Iterator[bytes]:
    """All emails as one JSON list, produced batch by batch."""
    names = [name for name in (fields or "").split(",") if name]
    yield b"["
    first = True
    for batch in emu.store.iter_email_data():
        texts = [project(text, names) for text in batch] if names else batch
        yield (("" if first else ",") + ",".join(texts)).encode()
        first = False
    yield b"]"
