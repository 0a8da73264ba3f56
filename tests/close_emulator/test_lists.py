"""`GET /activity/email/` and `GET /activity/`: every list parameter, its errors and the order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from .conftest import Api

MAX_LIMIT = (
    "The limit you set is larger than the maximum limit for this resource (max_limit = 100)."
)


def dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def order_key(email: dict) -> tuple[datetime, str]:
    return dt(email["date_created"]), email["id"]


@pytest.fixture(scope="module")
def everything(shared) -> list[dict]:
    """All 400 emails of the shared emulator, as its own store holds them (newest first)."""
    return shared.emulator.all_emails()


def ids(emails: list[dict]) -> list[str]:
    return [email["id"] for email in emails]


# --- _limit, _skip, has_more ---------------------------------------------------------------------


def test_default_limit_is_100_and_has_more(api: Api, everything: list[dict]) -> None:
    page = api.get("/activity/email/").json()
    assert set(page) == {"data", "has_more"}
    assert len(page["data"]) == 100
    assert page["has_more"] is True
    assert ids(page["data"]) == ids(everything[:100])


def test_limit_max_is_100_then_400(api: Api) -> None:
    assert len(api.get("/activity/email/", params={"_limit": 100}).json()["data"]) == 100
    response = api.get("/activity/email/", params={"_limit": 101})
    assert response.status_code == 400
    assert response.json() == {"error": MAX_LIMIT}


def test_skip_and_has_more_at_the_end(api: Api, everything: list[dict]) -> None:
    page = api.get("/activity/email/", params={"_skip": 3, "_limit": 7}).json()
    assert ids(page["data"]) == ids(everything[3:10])
    assert page["has_more"] is True
    before_end = api.get("/activity/email/", params={"_skip": 394, "_limit": 5}).json()
    assert ids(before_end["data"]) == ids(everything[394:399]) and before_end["has_more"] is True
    last = api.get("/activity/email/", params={"_skip": 395, "_limit": 5}).json()
    assert ids(last["data"]) == ids(everything[395:]) and last["has_more"] is False
    past = api.get("/activity/email/", params={"_skip": 400}).json()
    assert past == {"data": [], "has_more": False}


def test_walking_pages_returns_every_email_once_in_order(api: Api, everything) -> None:
    walked = api.emails()
    assert ids(walked) == ids(everything)
    assert len(set(ids(walked))) == 400


def test_order_is_newest_date_created_first_with_id_tie_break(api: Api, everything) -> None:
    keys = [order_key(email) for email in api.emails()]
    assert keys == sorted(keys, reverse=True)
    assert everything[0]["date_created"] >= everything[-1]["date_created"]


def test_equal_date_created_is_ordered_by_id_descending(fresh) -> None:
    close = fresh(emails=50)
    lead = close.server.emulator.all_emails()[0]["lead_id"]
    at = "2020-02-02T02:02:02.123000+00:00"
    made = [
        close.post(
            "/activity/email/", json={"lead_id": lead, "status": "inbox", "date_created": at}
        ).json()["id"]
        for _ in range(6)
    ]
    for _ in range(2):  # the same order on every call
        params = {"date_created__gte": at, "date_created__lte": at}
        page = close.get("/activity/email/", params=params)
        got = ids(page.json()["data"])
        assert got == sorted(made, reverse=True)
    # paging through the tie with _limit=2 neither repeats nor skips rows
    walked = []
    for skip in (0, 2, 4):
        params = {"date_created__gte": at, "date_created__lte": at, "_skip": skip, "_limit": 2}
        walked += ids(close.get("/activity/email/", params=params).json()["data"])
    assert walked == sorted(made, reverse=True)


# --- id and owner filters ------------------------------------------------------------------------


def test_id_in_comma_list(api: Api, everything) -> None:
    wanted = [everything[i]["id"] for i in (250, 7, 133)]
    data = api.get("/activity/email/", params={"id__in": ",".join(wanted)}).json()["data"]
    assert ids(data) == [everything[i]["id"] for i in (7, 133, 250)]  # still newest first
    spaced = api.get("/activity/email/", params={"id__in": f"{wanted[0]}, {wanted[1]}"}).json()
    assert set(ids(spaced["data"])) == set(wanted[:2])
    assert api.get("/activity/email/", params={"id__in": "acti_nope"}).json()["data"] == []


@pytest.mark.parametrize("name", ["lead_id", "contact_id", "user_id"])
def test_owner_filters_take_comma_lists(api: Api, everything, name: str) -> None:
    values = sorted({email[name] for email in everything if email[name]})
    one, two = values[0], values[-1]
    expected_one = [e for e in everything if e[name] == one]
    expected_two = [e for e in everything if e[name] in (one, two)]
    assert 0 < len(expected_one) < len(expected_two) < 400
    assert ids(api.emails(**{name: one})) == ids(expected_one)
    assert ids(api.emails(**{name: f"{one},{two}"})) == ids(expected_two)
    assert api.emails(**{name: "nobody"}) == []


def test_organization_id(api: Api, everything) -> None:
    org = everything[0]["organization_id"]
    assert len(api.emails(organization_id=org)) == 400
    assert api.emails(organization_id="orga_other") == []


def test_type_filter(api: Api, everything) -> None:
    assert ids(api.emails(_type="Email")) == ids(everything)
    assert ids(api.emails(_type="Call,Email")) == ids(everything)
    assert api.get("/activity/email/", params={"_type": "Call"}).json() == {
        "data": [],
        "has_more": False,
    }


def test_filters_combine(api: Api, everything) -> None:
    lead = everything[10]["lead_id"]
    low = everything[300]["date_created"]
    expected = [e for e in everything if e["lead_id"] == lead and dt(e["date_created"]) > dt(low)]
    got = api.emails(lead_id=lead, date_created__gt=low, _type="Email")
    assert ids(got) == ids(expected) and expected


# --- date filters --------------------------------------------------------------------------------

OPS = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def expect(everything: list[dict], field: str, op: str, bound: datetime) -> list[str]:
    return [e["id"] for e in everything if e[field] is not None and OPS[op](dt(e[field]), bound)]


@pytest.mark.parametrize("field", ["date_created", "activity_at"])
@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
def test_each_date_operator_on_an_exact_value(api: Api, everything, field: str, op: str) -> None:
    """The bound is an existing value with milliseconds, so gt/gte and lt/lte differ by it."""
    pivot = next(e[field] for e in everything[150:] if e[field] and "." in e[field])
    got = ids(api.emails(**{f"{field}__{op}": pivot}))
    want = expect(everything, field, op, dt(pivot))
    assert got == want
    assert 0 < len(got) < 400


def test_gt_and_gte_differ_by_exactly_the_boundary_row(api: Api, everything) -> None:
    pivot = next(e for e in everything[200:] if "." in e["date_created"])
    value = pivot["date_created"]
    gte = set(ids(api.emails(date_created__gte=value)))
    gt = set(ids(api.emails(date_created__gt=value)))
    assert gte - gt == {e["id"] for e in everything if e["date_created"] == value}
    assert pivot["id"] in gte


@pytest.mark.parametrize("field", ["date_created", "activity_at"])
def test_datetime_spellings_mean_the_same_instant(api: Api, everything, field: str) -> None:
    pivot = next(e[field] for e in everything[120:] if e[field] and "." in e[field])
    instant = dt(pivot)
    naive = instant.replace(tzinfo=None).isoformat()  # microseconds included
    spellings = {
        "offset +00:00": pivot,
        "Z": pivot.replace("+00:00", "Z"),
        "+02:00": instant.astimezone(timezone(timedelta(hours=2))).isoformat(),
        "-05:30": instant.astimezone(timezone(timedelta(hours=-5, minutes=-30))).isoformat(),
        "naive (UTC)": naive,
    }
    want = expect(everything, field, "gte", instant)
    for name, spelling in spellings.items():
        assert ids(api.emails(**{f"{field}__gte": spelling})) == want, name
    # a naive value is read in the X-TZ-Offset zone
    local = instant.astimezone(timezone(timedelta(hours=3))).replace(tzinfo=None).isoformat()
    got = api.emails(**{f"{field}__gte": local})  # read as UTC: 3 hours later
    assert ids(got) == expect(everything, field, "gte", instant + timedelta(hours=3))
    api.session.headers["X-TZ-Offset"] = "3"
    try:
        assert ids(api.emails(**{f"{field}__gte": local})) == want
    finally:
        del api.session.headers["X-TZ-Offset"]


def test_microseconds_in_a_bound_count(api: Api, everything) -> None:
    pivot = next(e for e in everything[100:] if "." in e["date_created"])
    one_us_later = (dt(pivot["date_created"]) + timedelta(microseconds=1)).isoformat()
    assert ".000001" not in one_us_later and one_us_later.endswith("+00:00")
    got = set(ids(api.emails(date_created__gte=one_us_later)))
    assert pivot["id"] not in got
    assert pivot["id"] in set(ids(api.emails(date_created__lt=one_us_later)))


@pytest.mark.parametrize("field", ["date_created", "activity_at"])
def test_a_date_means_midnight_utc(api: Api, everything, field: str) -> None:
    day = dt(next(e[field] for e in everything[50:] if e[field])).date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    params = {
        f"{field}__gte": day.isoformat(),
        f"{field}__lt": (day + timedelta(days=1)).isoformat(),
    }
    got = api.emails(**params)
    want = [e["id"] for e in everything if e[field] and start <= dt(e[field]) < end]
    assert ids(got) == want and want
    lte = api.emails(**{f"{field}__lte": day.isoformat()})
    assert ids(lte) == expect(everything, field, "lte", start)


def test_one_day_window_with_naive_datetimes_like_closes_export_script(api: Api, everything):
    day = dt(everything[30]["date_created"]).date()
    params = {
        "date_created__gte": f"{day}T00:00:00",
        "date_created__lte": f"{day}T23:59:59",
    }
    got = api.emails(**params)
    assert got and all(e["date_created"].startswith(str(day)) for e in got)
    assert len(got) == sum(1 for e in everything if e["date_created"].startswith(str(day)))


# --- _fields, unknown parameters -----------------------------------------------------------------


def test_fields_projection(api: Api, everything) -> None:
    response = api.get(
        "/activity/email/", params={"_fields": "id,date_updated,bogus,sequence_id", "_limit": 50}
    )
    data = response.json()["data"]
    assert [set(item) for item in data] == [{"id", "date_updated", "sequence_id"}] * 50
    for item, full in zip(data, everything, strict=False):
        assert item == {
            "id": full["id"],
            "date_updated": full["date_updated"],
            "sequence_id": full.get("sequence_id"),
        }
    single = api.get(f"/activity/email/{everything[0]['id']}/", params={"_fields": "id,subject"})
    assert single.json() == {"id": everything[0]["id"], "subject": everything[0]["subject"]}


@pytest.mark.parametrize(
    "unknown",
    [
        {"date_updated__gt": "2999-01-01T00:00:00"},
        {"date_updated__gte": "garbage"},
        {"foo": "bar"},
        {"date_created__between": "x"},
        {"_order_by": "-date_updated"},  # not a parameter of /activity/email/
        {"status": "draft"},
    ],
)
def test_unknown_parameters_are_ignored(api: Api, everything, unknown: dict) -> None:
    response = api.get("/activity/email/", params={**unknown, "_limit": 100})
    assert response.status_code == 200
    assert ids(response.json()["data"]) == ids(everything[:100])


# --- malformed values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"_limit": "abc"}, '_limit must be an integer (got "abc" instead).'),
        ({"_limit": "-1"}, '_limit must be a non-negative integer (got "-1" instead).'),
        ({"_skip": "x"}, '_skip must be an integer (got "x" instead).'),
        ({"_skip": "1.5"}, '_skip must be an integer (got "1.5" instead).'),
        ({"_skip": "-1"}, '_skip must be a non-negative integer (got "-1" instead).'),
        ({"_limit": "1000"}, MAX_LIMIT),
    ],
)
def test_bad_skip_and_limit_are_400_with_closes_messages(api: Api, params, message) -> None:
    response = api.get("/activity/email/", params=params)
    assert response.status_code == 400
    assert response.json() == {"error": message}
    assert response.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    "value", ["yesterday", "2024-13-01", "2024/01/01", "01-02-2024", "2024-01-01T25:00:00", "1e9"]
)
@pytest.mark.parametrize("name", ["date_created__gte", "date_created__lt", "activity_at__gt"])
def test_malformed_dates_are_400_field_errors(api: Api, name: str, value: str) -> None:
    response = api.get("/activity/email/", params={name: value})
    assert response.status_code == 400
    assert response.json() == {"errors": [], "field-errors": {name: "Invalid ISO 8601 datetime."}}


def test_every_bad_date_is_reported(api: Api) -> None:
    bad = {f"{f}__{op}": "nope" for f in ("date_created", "activity_at") for op in OPS}
    response = api.get("/activity/email/", params=bad)
    assert response.status_code == 400
    assert response.json()["field-errors"] == dict.fromkeys(bad, "Invalid ISO 8601 datetime.")


# --- method override, paths ----------------------------------------------------------------------


def test_post_with_method_override_and_params_is_a_get(api: Api, everything) -> None:
    wanted = ids(everything[5:160])  # 155 ids: a URL far over 2,000 characters
    body = {"_params": {"id__in": wanted, "_fields": ["id", "subject"], "_limit": 100, "_skip": 50}}
    response = api.post("/activity/email/", json=body, headers={"X-HTTP-Method-Override": "GET"})
    assert response.status_code == 200
    page = response.json()
    assert page["has_more"] is True
    assert page["data"] == [{"id": e["id"], "subject": e["subject"]} for e in everything[55:155]]
    lower = api.post(
        "/activity/", json={"_params": {"_type": "Email", "_limit": 3}},
        headers={"x-http-method-override": "get"},
    )  # fmt: skip
    assert ids(lower.json()["data"]) == ids(everything[:3])
    # query string and _params together; _params wins
    both = api.post(
        "/activity/email/?_limit=2&_skip=1",
        json={"_params": {"_limit": 4}},
        headers={"X-HTTP-Method-Override": "GET"},
    )
    assert ids(both.json()["data"]) == ids(everything[1:5])
    # errors are the GET ones
    bad = api.post(
        "/activity/email/",
        json={"_params": {"date_created__gt": "soon"}},
        headers={"X-HTTP-Method-Override": "GET"},
    )
    assert bad.status_code == 400 and "date_created__gt" in bad.json()["field-errors"]


@pytest.mark.parametrize(
    "path",
    ["/activity/email/", "/activity/email", "//activity/email/", "/activity//email", "/activity/"],
)
def test_paths_with_and_without_trailing_slash(api: Api, everything, path: str) -> None:
    response = api.get(path, params={"_limit": 5, "_skip": 2})
    assert response.status_code == 200
    assert ids(response.json()["data"]) == ids(everything[2:7])


def test_single_email_and_me_without_trailing_slash(api: Api, everything) -> None:
    assert api.get(f"/activity/email/{everything[9]['id']}").json() == everything[9]
    assert api.get("/me").json()["id"] == api.get("/me/").json()["id"]
    assert api.get("/event").status_code == 200


def test_unknown_paths_are_404_and_wrong_methods_405(api: Api) -> None:
    response = api.get("/activity/call/")
    assert response.status_code == 404
    assert response.json()["error"].startswith("The requested URL was not found on the server.")
    assert api.get("/nothing").status_code == 404
    wrong = api.delete("/activity/email/")
    assert wrong.status_code == 405
    assert "error" in wrong.json()
    assert api.session.patch(api.base + "/me/").status_code == 405


def test_custom_fields_are_empty_also_with_a_double_slash(api: Api) -> None:
    for path in ("/custom_field/lead/", "//custom_field/contact/", "/custom_field/opportunity"):
        assert api.get(path).json() == {"data": [], "has_more": False}


# --- /activity/ ----------------------------------------------------------------------------------


def test_activity_endpoint_types(api: Api, everything) -> None:
    assert ids(api.get("/activity/", params={"_type": "Email"}).json()["data"]) == ids(
        everything[:100]
    )
    for params in ({"_type": "Call"}, {"_type__in": "Call,Note"}, {"_type": "EmailThread"}):
        assert api.get("/activity/", params=params).json() == {"data": [], "has_more": False}
    assert len(api.get("/activity/", params={"_type__in": "Call,Email"}).json()["data"]) == 100
    # lead_id__in / user_id__in are accepted on /activity/
    lead = everything[0]["lead_id"]
    got = api.get("/activity/", params={"lead_id__in": lead, "_limit": 100}).json()["data"]
    assert ids(got) == [e["id"] for e in everything if e["lead_id"] == lead][:100]


def test_activity_order_by(api: Api, everything) -> None:
    ascending = api.get("/activity/", params={"_order_by": "date_created", "_limit": 10}).json()
    assert ids(ascending["data"]) == ids(sorted(everything, key=order_key)[:10])
    for value in ("-date_created", "subject", "-date_updated", ""):
        page = api.get("/activity/", params={"_order_by": value, "_limit": 10}).json()
        assert ids(page["data"]) == ids(everything[:10]), value  # default order


def test_activity_order_by_activity_at_needs_lead_id(api: Api, everything) -> None:
    response = api.get("/activity/", params={"_order_by": "-activity_at"})
    assert response.status_code == 400
    assert "lead_id" in response.json()["error"]
    lead = everything[0]["lead_id"]
    mine = [e for e in everything if e["lead_id"] == lead]
    page = api.get(
        "/activity/", params={"_order_by": "-activity_at", "lead_id": lead, "_limit": 100}
    ).json()["data"]
    dated = sorted(
        (e for e in mine if e["activity_at"]), key=lambda e: (dt(e["activity_at"]), e["id"])
    )[::-1]
    assert ids(page[: len(dated)]) == ids(dated)
    assert len(page) == len(mine)


def test_activity_date_filters_only_on_the_sorted_field(api: Api, everything) -> None:
    lead = everything[0]["lead_id"]
    value = everything[200]["date_created"]
    ok = api.get("/activity/", params={"date_created__gte": value, "_limit": 100})
    assert ok.status_code == 200
    assert (
        ids(ok.json()["data"])
        == [e["id"] for e in everything if dt(e["date_created"]) >= dt(value)][:100]
    )
    on_activity_at = api.get("/activity/", params={"activity_at__gte": value})
    assert on_activity_at.status_code == 400
    assert "_order_by=-activity_at" in on_activity_at.json()["error"]
    sorted_on_it = api.get(
        "/activity/",
        params={"activity_at__gte": value, "_order_by": "-activity_at", "lead_id": lead},
    )
    assert sorted_on_it.status_code == 200
    assert all(dt(e["activity_at"]) >= dt(value) for e in sorted_on_it.json()["data"])
    wrong_field = api.get(
        "/activity/",
        params={"date_created__gte": value, "_order_by": "-activity_at", "lead_id": lead},
    )
    assert wrong_field.status_code == 400
    # /activity/email/ has no such rule
    assert api.get("/activity/email/", params={"activity_at__gte": value}).status_code == 200


def test_activity_limit_and_skip_rules_are_the_same(api: Api) -> None:
    assert api.get("/activity/", params={"_limit": 101}).json() == {"error": MAX_LIMIT}
    assert api.get("/activity/", params={"_skip": "-3"}).status_code == 400


# --- what the peer connectors send (bench/peers_check.sh runs the real ones) ---------------------


def test_requests_as_airbyte_0_5_30_sends_them(api: Api, everything) -> None:
    """Paths without the trailing slash, custom fields with a double slash, `_skip` from the
    previous URL's `_skip` + `_limit`, and `date_created__gte` with an offset on later runs."""
    assert api.get("/me").status_code == 200  # `check`
    for kind in ("lead", "contact", "opportunity"):
        assert api.get(f"//custom_field/{kind}/").json()["data"] == []
    walked, skip = [], 0
    while True:
        page = api.get("/activity/email", params={"_limit": 100, "_skip": skip}).json()
        walked += ids(page["data"])
        if not page["has_more"]:
            break
        skip += 100
    assert walked == ids(everything)
    state = everything[10]["date_created"]
    again = api.get("/activity/email", params={"_limit": 100, "date_created__gte": state})
    assert ids(again.json()["data"]) == ids(everything[:11])  # gte: the boundary row again


def test_requests_as_tap_closeio_1_6_6_sends_them(api: Api, everything) -> None:
    """Discover probes /event/ without filters (a 400 would hide event_log); activities come
    from /activity/ in windows of naive, second-precision, strict `__gt`/`__lt` bounds."""
    probe = api.get("/event/")
    assert probe.status_code == 200 and "cursor_next" in probe.json()
    newest = dt(everything[0]["date_created"])
    start = (newest - timedelta(days=30)).replace(microsecond=0, tzinfo=None)
    window = {
        "date_created__gt": start.isoformat(),
        "date_created__lt": (start + timedelta(days=31)).isoformat(),
        "_limit": 100,
        "_skip": 0,
    }
    got = []
    while True:
        page = api.get("/activity/", params=window).json()
        got += ids(page["data"])
        if not page["has_more"]:
            break
        window["_skip"] += len(page["data"])
    bound = start.replace(tzinfo=UTC)
    assert got == [e["id"] for e in everything if dt(e["date_created"]) > bound]
