"""Authentication and Close's rate limits (per key and endpoint group, and per organization)."""

from __future__ import annotations

import base64
import math
import re
import time

import pytest
import requests

from .conftest import Api, sleep_until_fresh_window

HEADER = re.compile(r"^limit=(\d+), remaining=(\d+), reset=(\d+(?:\.\d+)?)$")


def rate(response: requests.Response) -> tuple[int, int, float]:
    match = HEADER.match(response.headers["RateLimit"])
    assert match, response.headers["RateLimit"]
    return int(match[1]), int(match[2]), float(match[3])


# --- authentication ------------------------------------------------------------------------------


def test_basic_with_empty_password_and_bearer(api: Api) -> None:
    url = api.base + "/me/"
    basic = base64.b64encode(b"some-key:").decode()
    assert requests.get(url, headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert requests.get(url, auth=("some-key", "")).status_code == 200
    assert requests.get(url, headers={"Authorization": "Bearer some-token"}).status_code == 200
    assert requests.get(url, headers={"Authorization": "bearer some-token"}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Basic " + base64.b64encode(b":").decode()},  # no key
        {"Authorization": "Basic " + base64.b64encode(b":secret").decode()},
        {"Authorization": "Basic not*base64"},
        {"Authorization": "Bearer "},
        {"Authorization": "Token abc"},
    ],
)
@pytest.mark.parametrize("path", ["/me/", "/activity/email/", "/event/", "/activity/email/x/"])
def test_missing_or_malformed_credentials_are_401(api: Api, headers: dict, path: str) -> None:
    response = requests.get(api.base + path, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}
    assert rate(response)[0] > 0  # the RateLimit header is there too


def test_configured_api_key(fresh) -> None:
    close = fresh(emails=20, api_key="api_right")
    url = close.base + "/activity/email/"
    assert requests.get(url, auth=("api_right", "")).status_code == 200
    assert requests.get(url, headers={"Authorization": "Bearer api_right"}).status_code == 200
    for auth in (("api_wrong", ""), ("API_RIGHT", ""), ("api_right2", "")):
        wrong = requests.get(url, auth=auth)
        assert wrong.status_code == 401 and wrong.json() == {"error": "Unauthorized"}
    assert requests.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    # the admin API needs no key
    assert close.server.admin.config()["api_key"] == "api_right"


# --- rate limits ---------------------------------------------------------------------------------


def test_ratelimit_header_on_every_response(fresh) -> None:
    close = fresh(emails=20, rate=20)
    responses = {
        200: close.get("/activity/email/"),
        400: close.get("/activity/email/", params={"_limit": 500}),
        401: requests.get(close.base + "/me/"),
        404: close.get("/activity/email/acti_missing/"),
        405: close.delete("/me/"),
    }
    for status, response in responses.items():
        assert response.status_code == status
        limit, remaining, reset = rate(response)
        assert limit == 20 and 0 <= remaining <= 20 and reset == 1, status
    unlimited = fresh(emails=5, rate=0).get("/me/")
    assert rate(unlimited)[0] >= 1000 and rate(unlimited)[1] >= 1000


def test_429_when_a_key_exceeds_its_group_limit(fresh) -> None:
    close = fresh(emails=20, rate=1, rate_window=4, rate_fractional_reset=True)
    sleep_until_fresh_window(close, 2.5)
    seen = [close.get("/me/") for _ in range(5)]
    assert [r.status_code for r in seen] == [200, 200, 200, 200, 429]
    assert [rate(r)[:2] for r in seen] == [(4, 3), (4, 2), (4, 1), (4, 0), (4, 0)]
    limited = seen[-1]
    body = limited.json()
    assert set(body) == {"error"}
    assert 0 < body["error"]["rate_reset"] <= 4
    assert body["error"]["rate_limit_type"] == "key"
    assert body["error"]["message"]
    retry_after = int(limited.headers["Retry-After"])
    assert retry_after == max(1, math.ceil(body["error"]["rate_reset"]))
    assert abs(rate(limited)[2] - body["error"]["rate_reset"]) < 0.2  # fractional reset header
    # another endpoint group of the same key is counted separately ...
    other_group = close.get("/activity/email/", params={"_limit": 1})
    assert other_group.status_code == 200 and rate(other_group)[:2] == (4, 3)
    # ... and so is another key on the same group; the header shows the tighter bucket, here
    # the organization's (5 of 12 used: 7/12 left, versus 3/4 of the key's)
    other_key = requests.get(close.base + "/me/", auth=("key-2", ""))
    assert other_key.status_code == 200
    assert rate(other_key)[:2] == (12, 7)
    # the request log shows the 429 with its group
    entry = close.server.emulator.request_log[-3]
    assert (entry.status, entry.group) == (429, "GET /me/")


def test_organization_bucket_is_three_times_the_key_limit(fresh) -> None:
    close = fresh(emails=20, rate=1, rate_window=4, rate_fractional_reset=True)
    sleep_until_fresh_window(close, 3)
    for key in ("k1", "k2", "k3"):
        statuses = [requests.get(close.base + "/me/", auth=(key, "")).status_code for _ in range(4)]
        assert statuses == [200] * 4
    fourth = requests.get(close.base + "/me/", auth=("k4", ""))
    assert fourth.status_code == 429
    assert fourth.json()["error"]["rate_limit_type"] == "organization"
    assert rate(fourth)[:2] == (12, 0)
    # other groups are not affected
    assert requests.get(close.base + "/event/", auth=("k4", "")).status_code == 200


def test_limits_reset_after_the_window(fresh) -> None:
    close = fresh(emails=20, rate=4, rate_window=0.5, rate_fractional_reset=True)
    sleep_until_fresh_window(close, 0.3)
    assert [close.get("/me/").status_code for _ in range(3)] == [200, 200, 429]
    limited = close.get("/me/")
    time.sleep(limited.json()["error"]["rate_reset"] + 0.02)
    again = close.get("/me/")
    assert again.status_code == 200 and rate(again)[:2] == (2, 1)


def test_groups_are_method_and_route_template(fresh) -> None:
    close = fresh(emails=20, rate=1, rate_window=4)
    emails = close.server.emulator.all_emails()
    sleep_until_fresh_window_whole(close)
    # GET /activity/email/{id}/ is one group for all ids
    remaining = [rate(close.get(f"/activity/email/{e['id']}/"))[1] for e in emails[:3]]
    assert remaining == [3, 2, 1]
    # a method override counts as GET /activity/email/, not as POST /activity/email/
    override = close.post(
        "/activity/email/", json={"_params": {}}, headers={"X-HTTP-Method-Override": "GET"}
    )
    assert rate(override)[1] == 3
    post = close.post("/activity/email/", json={"status": "draft", "lead_id": emails[0]["lead_id"]})
    assert post.status_code == 200 and rate(post)[1] == 3
    groups = [entry.group for entry in close.server.emulator.request_log][-5:]
    assert groups == [
        "GET /activity/email/{id}/",
        "GET /activity/email/{id}/",
        "GET /activity/email/{id}/",
        "GET /activity/email/",
        "POST /activity/email/",
    ]


def sleep_until_fresh_window_whole(close: Api) -> None:
    """Like sleep_until_fresh_window, for whole-second reset values."""
    close.server.emulator.set_config(rate_fractional_reset=True)
    sleep_until_fresh_window(close, 2)
    close.server.emulator.set_config(rate_fractional_reset=False)


def test_legacy_headers_and_whole_second_reset(fresh) -> None:
    close = fresh(emails=20, rate=3, legacy_rate_headers=True)
    response = close.get("/me/")
    limit, remaining, reset = rate(response)
    assert response.headers["RateLimit"].endswith(f"reset={int(reset)}") and reset == 1
    assert response.headers["X-Rate-Limit-Limit"] == str(limit) == "3"
    assert response.headers["X-Rate-Limit-Remaining"] == str(remaining)
    assert 0 < float(response.headers["X-Rate-Limit-Reset"]) <= 1
    plain = fresh(emails=5, rate=3).get("/me/")
    assert "X-Rate-Limit-Limit" not in plain.headers
