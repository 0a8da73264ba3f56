"""The Close REST API endpoints (under `/api/v1`): routing, parameter validation with Close's
error messages, list pages, the event log and email mutations."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Any

from . import events as ev
from .clock import DAY_US, fmt, parse_filter, parse_iso, to_us, truncate_ms
from .generator import EMAIL_FIELDS, STATUSES, to_json
from .store import EmailQuery

if TYPE_CHECKING:
    from .emulator import Emulator

PREFIX = "/api/v1"
NOT_FOUND = (
    "The requested URL was not found on the server. If you entered the URL manually please "
    "check your spelling and try again."
)
INVALID_DATETIME = "Invalid ISO 8601 datetime."
OPS = ("gt", "gte", "lt", "lte")
NOT_WRITABLE = ("id", "_type", "organization_id", "date_updated", "thread_id")
CONTENT_FIELDS = ("subject", "body_text", "body_html", "to", "cc", "bcc", "sender", "attachments")
TRANSITIONS = {
    "draft": {"draft", "scheduled", "outbox", "sent"},
    "scheduled": {"scheduled", "draft", "outbox"},
    "outbox": {"outbox", "draft"},
}


@dataclass
class Response:
    """An HTTP response: a body (bytes, or an iterator of chunks to stream) and headers."""

    status: int
    body: bytes | Iterator[bytes]
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, obj: Any) -> Response:
    """A JSON response."""
    return Response(status, to_json(obj).encode())


class ApiError(Exception):
    """Raised by handlers to answer with an error status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


@dataclass
class Request:
    """An API request after method override and `_params` merging."""

    method: str  # the effective method
    path: str  # full normalized path, e.g. /api/v1/activity/email/
    params: dict[str, str]
    body: bytes
    headers: Message
    api_key: str


Handler = Callable[..., Response]


@dataclass
class Route:
    """The endpoint a request resolved to (handler None: unknown path or method)."""

    group: str  # rate-limit endpoint group, e.g. "GET /activity/email/"
    handler: Handler | None
    args: tuple[str, ...] = ()
    status: int = 404  # when handler is None: 404 unknown path, 405 unknown method


def normalize(path: str) -> str:
    """Collapse repeated slashes and add the trailing slash Close's paths have."""
    path = re.sub(r"/{2,}", "/", path)
    return path if path.endswith("/") else path + "/"


def resolve(method: str, path: str) -> Route:
    """Find the endpoint for a normalized full path."""
    sub = path[len(PREFIX) :] if path.startswith(PREFIX + "/") else None
    for template, pattern, methods in _ROUTES:
        match = pattern.fullmatch(sub or "")
        if match:
            group = f"{method} {template}"
            if method not in methods:
                return Route(group, None, status=405)
            return Route(group, methods[method], match.groups())
    return Route(f"{method} (unknown)", None)


def not_routed(route: Route) -> Response:
    """The 404/405 answer for an unmatched route."""
    if route.status == 405:
        return json_response(405, {"error": "The method is not allowed for the requested URL."})
    return json_response(404, {"error": NOT_FOUND})


# --- parameters ----------------------------------------------------------------------------------


def _int(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            400, {"error": f'{name} must be an integer (got "{raw}" instead).'}
        ) from None
    if value < 0:
        raise ApiError(
            400, {"error": f'{name} must be a non-negative integer (got "{raw}" instead).'}
        )
    return value


def _limit(params: dict[str, str], default: int, maximum: int) -> int:
    """`_limit`, at most `maximum`; without `_limit` the default, capped at the maximum (as in
    Close's framework: only an explicit `_limit` over the maximum is an error)."""
    limit = _int(params, "_limit", min(default, maximum))
    if limit > maximum:
        message = (
            "The limit you set is larger than the maximum limit for this resource "
            f"(max_limit = {maximum})."
        )
        raise ApiError(400, {"error": message})
    return limit


def _list(params: dict[str, str], *names: str) -> list[str] | None:
    """Comma-separated values of any of `names` (None when none are given)."""
    values = [v.strip() for name in names for v in params.get(name, "").split(",") if v.strip()]
    return values or None


def _tz_offset(headers: Message) -> float:
    try:
        return float(headers.get("X-TZ-Offset", "0"))
    except ValueError:
        return 0.0


def _dates(params: dict[str, str], name: str, tz: float, errors: dict[str, str]) -> dict[str, int]:
    """`name__gt/gte/lt/lte` as epoch microseconds; bad values are added to `errors`."""
    bounds = {}
    for op in OPS:
        key = f"{name}__{op}"
        if key in params:
            try:
                bounds[op] = parse_filter(params[key], tz)
            except ValueError:
                errors[key] = INVALID_DATETIME
    return bounds


def _field_errors(errors: dict[str, str]) -> None:
    if errors:
        raise ApiError(400, {"errors": [], "field-errors": errors})


def _json_body(req: Request) -> dict[str, Any]:
    try:
        body = json.loads(req.body or b"null")
    except ValueError:
        raise ApiError(400, {"error": "The request contains invalid JSON."}) from None
    if body is None:
        raise ApiError(
            400, {"error": "Please send valid JSON with a 'Content-Type: application/json' header."}
        )
    if not isinstance(body, dict):
        raise ApiError(400, {"error": "JSON data must be a dict."})
    return body


def project(text: str, fields: list[str]) -> str:
    """Keep only `fields` of a stored email (unknown names ignored, known but absent -> null)."""
    obj = json.loads(text)
    picked = {f: obj.get(f) for f in fields if f in obj or f in EMAIL_FIELDS}
    return to_json(picked)


# --- email lists ---------------------------------------------------------------------------------


def email_query(emu: Emulator, req: Request, activities: bool) -> EmailQuery:
    """Validate list parameters into a query (`activities`: the rules of `/activity/`)."""
    p = req.params
    limit = _limit(p, 100, emu.config.max_limit)
    skip = _int(p, "_skip", 0)
    if skip > emu.config.max_skip:
        message = (
            "The skip you set is larger than the maximum skip for this resource "
            f"(max_skip = {emu.config.max_skip}). Please refine your search query."
        )
        raise ApiError(400, {"error": message})

    def values(name: str) -> list[str] | None:  # `/activity/` also takes `name__in`
        return _list(p, name, f"{name}__in") if activities else _list(p, name)

    types = values("_type")
    query = EmailQuery(
        ids=_list(p, "id__in"),
        lead_ids=values("lead_id"),
        contact_ids=values("contact_id"),
        user_ids=values("user_id"),
        organization_id=p.get("organization_id") or None,
        limit=limit,
        skip=skip,
        empty=types is not None and "Email" not in types,
    )
    tz = _tz_offset(req.headers)
    errors: dict[str, str] = {}
    query.date_created = _dates(p, "date_created", tz, errors)
    query.activity_at = _dates(p, "activity_at", tz, errors)
    _field_errors(errors)
    if activities:
        order = p.get("_order_by")
        if order == "-activity_at" and not query.lead_ids:
            message = "Sorting by -activity_at is only supported when filtering by a lead_id."
            raise ApiError(400, {"error": message})
        if order in ("date_created", "-date_created", "-activity_at"):
            query.order = order
        sort_field = "activity_at" if query.order == "-activity_at" else "date_created"
        other = query.date_created if sort_field == "activity_at" else query.activity_at
        if other:
            message = (
                "You can only use the date-based filters of the field you're sorting on "
                f"({sort_field}). Use _order_by=-activity_at together with lead_id to filter "
                "on activity_at."
            )
            raise ApiError(400, {"error": message})
    return query


def _page(emu: Emulator, req: Request, query: EmailQuery, drift: bool) -> Response:
    rows = [
        r[0] for r in emu.store.select_emails(dataclasses.replace(query, limit=query.limit + 1))
    ]
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    fields = _list(req.params, "_fields")
    if fields:
        rows = [project(text, fields) for text in rows]
    text = '{"data":[' + ",".join(rows) + '],"has_more":' + ("true" if has_more else "false") + "}"
    dated = query.date_created or query.activity_at
    if drift and dated and emu.faults.applies(req.path) and emu.faults.drift_due():
        emu.apply_drift(query, query.skip + len(rows))
    return Response(200, text.encode())


def list_emails(emu: Emulator, req: Request) -> Response:
    """GET /activity/email/"""
    return _page(emu, req, email_query(emu, req, activities=False), drift=True)


def list_activities(emu: Emulator, req: Request) -> Response:
    """GET /activity/ (only emails exist in the emulator)."""
    return _page(emu, req, email_query(emu, req, activities=True), drift=False)


# --- single emails -------------------------------------------------------------------------------


def _empty_query(model: str) -> ApiError:
    return ApiError(404, {"error": f"Empty query: {model} matching query does not exist."})


def get_email(emu: Emulator, req: Request, email_id: str) -> Response:
    """GET /activity/email/{id}/"""
    with emu.store.reader() as conn:
        text = emu.store.email_data(conn, email_id)
    if text is None:
        raise _empty_query("Email")
    fields = _list(req.params, "_fields")
    return Response(200, (project(text, fields) if fields else text).encode())


def _writable(body: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """The fields of a POST/PUT body that can be written; bad dates are added to `errors`."""
    fields = {k: v for k, v in body.items() if k in EMAIL_FIELDS and k not in NOT_WRITABLE}
    for key in ("date_created", "activity_at", "date_sent", "date_scheduled"):
        if fields.get(key) is not None:
            try:
                fields[key] = fmt(truncate_ms(_to_us(fields[key])))
            except (ValueError, TypeError):
                errors[key] = INVALID_DATETIME
    if "status" in fields and fields["status"] not in STATUSES:
        errors["status"] = f"Value must be one of: {', '.join(STATUSES)}."
    return fields


def create_email(emu: Emulator, req: Request) -> Response:
    """POST /activity/email/"""
    body = _json_body(req)
    errors = {key: "This field is required." for key in ("lead_id", "status") if not body.get(key)}
    fields = _writable(body, errors)
    if fields.get("status") == "scheduled" and not fields.get("date_scheduled"):
        errors["date_scheduled"] = "This field is required."
    if "lead_id" not in errors and emu.get_lead(body["lead_id"]) is None:
        errors["lead_id"] = "Object does not exist."
    _field_errors(errors)
    actor = emu.actor_for_request(req.api_key, req.path, "POST")
    return json_response(200, _written(emu, emu.create_email(actor=actor, **fields)))


def update_email(emu: Emulator, req: Request, email_id: str) -> Response:
    """PUT /activity/email/{id}/ (behaves as PATCH)."""
    body = _json_body(req)
    old = emu.get_email(email_id)
    if old is None:
        raise _empty_query("Email")
    errors: dict[str, str] = {}
    changes = _writable(body, errors)
    status = changes.get("status", old["status"])
    if status != old["status"] and status not in TRANSITIONS.get(old["status"], ()):
        errors["status"] = f"Cannot change the status from {old['status']} to {status}."
    if status == "scheduled" and not (changes.get("date_scheduled") or old["date_scheduled"]):
        errors["date_scheduled"] = "This field is required."
    _field_errors(errors)
    edits = [k for k in CONTENT_FIELDS if k in changes and changes[k] != old.get(k)]
    if edits and "draft" not in (old["status"], status):
        raise ApiError(400, {"error": "Only drafts can be modified."})
    now = fmt(truncate_ms(emu.clock.now_us()))
    if status != old["status"]:
        if status == "scheduled":
            changes["activity_at"] = changes.get("date_scheduled") or old["date_scheduled"]
        elif status == "draft":
            changes.update(activity_at=None, date_scheduled=None)
        elif status == "sent":
            changes.setdefault("date_sent", now)
            changes.setdefault("activity_at", changes["date_sent"])
    actor = emu.actor_for_request(req.api_key, req.path, "PUT")
    return json_response(200, _written(emu, emu.update_email(email_id, actor=actor, **changes)))


WRITTEN_DATES = ("date_created", "date_updated", "date_sent", "date_scheduled", "activity_at")


def _written(emu: Emulator, email: dict[str, Any]) -> dict[str, Any]:
    """A create/update answer: Close's own examples show its timestamps without an offset
    and with all six fraction digits (`2013-02-01T00:54:51.331000`), unlike list answers."""
    if not emu.config.naive_write_timestamps:
        return email
    answer = dict(email)
    for key in WRITTEN_DATES:
        if answer.get(key):
            moment = parse_iso(answer[key])
            answer[key] = moment.replace(tzinfo=None).isoformat(timespec="microseconds")
    return answer


def delete_email(emu: Emulator, req: Request, email_id: str) -> Response:
    """DELETE /activity/email/{id}/"""
    try:
        emu.delete_email(email_id, actor=emu.actor_for_request(req.api_key, req.path, "DELETE"))
    except KeyError:
        raise _empty_query("Email") from None
    return json_response(200, {})


def delete_thread(emu: Emulator, req: Request, thread_id: str) -> Response:
    """DELETE /activity/emailthread/{id}/ (deletes the thread's emails too)."""
    try:
        emu.delete_thread(thread_id, actor=emu.actor_for_request(req.api_key, req.path, "DELETE"))
    except KeyError:
        raise _empty_query("EmailThread") from None
    return json_response(200, {})


# --- other resources -----------------------------------------------------------------------------


def me(emu: Emulator, req: Request) -> Response:
    """GET /me/"""
    user = emu.me()
    generated = (emu.generation() or {}).get("now_us") or emu.clock.now_us()
    created = fmt(truncate_ms(generated - emu.config.history_days * DAY_US))
    return json_response(
        200,
        {
            "id": user["id"],
            "email": user["email"],
            "first_name": user["first_name"],
            "last_name": user["last_name"],
            "image": None,
            "date_created": created,
            "date_updated": created,
            "organizations": [
                {"id": emu.world.organization_id, "name": emu.world.organization_name}
            ],
        },
    )


def custom_fields(emu: Emulator, req: Request, object_type: str) -> Response:
    """GET /custom_field/{type}/ (the emulator has no custom fields)."""
    return json_response(200, {"data": [], "has_more": False})


# --- event log -----------------------------------------------------------------------------------


def _object_action(row: tuple[Any, ...]) -> tuple[str, str]:
    body = json.loads(row[4])
    return body.get("object_id") or "", body.get("action") or ""


def list_events(emu: Emulator, req: Request) -> Response:
    """GET /event/: newest first, cursor pagination, Close's supported filter combinations."""
    p = req.params
    filters = {key: p[key] for key in ev.FILTERS if p.get(key)}
    message = ev.combination_error(set(filters))
    if message:
        raise ApiError(400, {"error": message})
    limit = _limit(p, emu.config.event_max_limit, emu.config.event_max_limit)
    errors: dict[str, str] = {}
    bounds = list(_dates(p, "date_updated", _tz_offset(req.headers), errors).items())
    _field_errors(errors)
    cutoff = emu.clock.now_us() - int(emu.config.retention_days * DAY_US)
    emu.store.purge_events(cutoff)
    bounds.append(("gte", cutoff))
    cursor = p.get("_cursor") or ""
    anchor, newer = None, False
    if cursor:
        try:
            newer, updated, seq = ev.decode_cursor(cursor)
        except ValueError:
            raise ApiError(400, {"error": "Invalid cursor."}) from None
        anchor = (updated, seq)
    rows = emu.store.select_events(filters, bounds, anchor, newer, limit + 1)
    more = len(rows) > limit
    page = (rows[1:] if newer else rows[:limit]) if more else rows
    cursor_next = cursor_previous = None
    if page:
        first, last = page[0], page[-1]
        if more or newer:
            cursor_next = ev.encode_cursor(False, last[2], last[0])
        if (more and newer) or (anchor is not None and not newer):
            cursor_previous = ev.encode_cursor(True, first[2], first[0])
    if emu.faults.applies(req.path):  # out of order, consolidated (cursors as computed)
        page = emu.faults.shape_events(page, _object_action)
    naive = emu.config.naive_event_timestamps
    data = ",".join(ev.render(row[3], row[1], row[2], row[4], naive) for row in page)
    text = (
        f'{{"data":[{data}],"cursor_next":{json.dumps(cursor_next)},'
        f'"cursor_previous":{json.dumps(cursor_previous)}}}'
    )
    return Response(200, text.encode())


def get_event(emu: Emulator, req: Request, event_id: str) -> Response:
    """GET /event/{id}/"""
    row = emu.store.event_row(event_id)
    cutoff = emu.clock.now_us() - int(emu.config.retention_days * DAY_US)
    if row is None or row[1] < cutoff:
        raise _empty_query("Event")
    naive = emu.config.naive_event_timestamps
    return Response(200, ev.render(row[2], row[0], row[1], row[3], naive).encode())


def _to_us(value: Any) -> int:
    return to_us(parse_iso(str(value)))


def _route(template: str, methods: dict[str, Handler]) -> tuple[str, re.Pattern, dict]:
    pattern = re.compile(re.sub(r"\{\w+\}", r"([^/]+)", template))
    return template, pattern, methods


_ROUTES = [
    _route("/activity/email/", {"GET": list_emails, "POST": create_email}),
    _route(
        "/activity/email/{id}/", {"GET": get_email, "PUT": update_email, "DELETE": delete_email}
    ),
    _route("/activity/", {"GET": list_activities}),
    _route("/activity/emailthread/{id}/", {"DELETE": delete_thread}),
    _route("/me/", {"GET": me}),
    _route("/custom_field/{type}/", {"GET": custom_fields}),
    _route("/event/", {"GET": list_events}),
    _route("/event/{id}/", {"GET": get_event}),
]
