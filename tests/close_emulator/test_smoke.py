"""Quick checks of the Close emulator over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from close_emulator import Emulator, EmulatorConfig, EmulatorServer


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    emulator = Emulator(EmulatorConfig(rate=0))
    emulator.generate(1500, seed=7)
    with EmulatorServer(emulator) as srv:
        yield srv
    emulator.close()


@pytest.fixture()
def http() -> requests.Session:
    session = requests.Session()
    session.auth = ("test-key", "")
    return session


def test_pages_cover_every_email_once_and_has_more(server: EmulatorServer, http) -> None:
    ids: list[str] = []
    skip = 0
    while True:
        response = http.get(
            f"{server.base_url}/activity/email/", params={"_skip": skip, "_limit": 100}
        )
        assert response.status_code == 200
        assert response.headers["RateLimit"].startswith("limit=")
        page = response.json()
        ids += [email["id"] for email in page["data"]]
        if not page["has_more"]:
            break
        assert len(page["data"]) == 100
        skip += 100
    assert sorted(ids) == sorted(email["id"] for email in server.emulator.all_emails())
    assert len(set(ids)) == len(ids) == 1500


def test_date_filter_order_and_fields(server: EmulatorServer, http) -> None:
    emails = server.emulator.all_emails()
    low, high = sorted([emails[200]["date_created"], emails[100]["date_created"]])
    response = http.get(
        f"{server.base_url}/activity/email",  # no trailing slash
        params={
            "date_created__gte": low,
            "date_created__lt": high,
            "_fields": "id,date_created",
            "_limit": 100,
        },
    )
    data = response.json()["data"]
    assert 0 < len(data) <= 100
    assert all(set(item) == {"id", "date_created"} for item in data)
    assert all(low <= item["date_created"] < high for item in data)
    assert [item["date_created"] for item in data] == sorted(
        (item["date_created"] for item in data), reverse=True
    )


def test_limits_and_bad_dates_are_rejected_like_close(server: EmulatorServer, http) -> None:
    url = f"{server.base_url}/activity/email/"
    too_big = http.get(url, params={"_limit": 101})
    assert too_big.status_code == 400
    assert "max_limit = 100" in too_big.json()["error"]
    bad_date = http.get(url, params={"date_created__gte": "yesterday"})
    assert bad_date.status_code == 400
    assert bad_date.json()["field-errors"] == {"date_created__gte": "Invalid ISO 8601 datetime."}


def test_missing_or_wrong_auth_is_401(server: EmulatorServer) -> None:
    response = requests.get(f"{server.base_url}/activity/email/")
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}
    server.emulator.set_config(api_key="right")
    try:
        wrong = requests.get(f"{server.base_url}/me/", auth=("wrong", ""))
        right = requests.get(f"{server.base_url}/me/", headers={"Authorization": "Bearer right"})
    finally:
        server.emulator.set_config(api_key=None)
    assert wrong.status_code == 401
    assert right.status_code == 200


def test_admin_open_writes_an_updated_event(server: EmulatorServer, http) -> None:
    email = server.emulator.all_emails()[3]
    changed = server.admin.record_open(email["id"])
    assert changed["date_updated"] > email["date_updated"]
    assert changed["date_created"] == email["date_created"]
    assert len(changed["opens"]) == len(email["opens"]) + 1
    response = http.get(
        f"{server.base_url}/event/",
        params={"object_id": email["id"], "action": "updated", "_cursor": ""},
    )
    assert response.status_code == 200
    event = response.json()["data"][0]
    assert event["object_type"] == "activity.email"
    assert "opens" in event["changed_fields"]
    assert event["data"]["opens"] == changed["opens"]
    assert event["previous_data"]["opens"] == email["opens"]


def test_rate_limit_429(server: EmulatorServer, http) -> None:
    server.emulator.set_config(rate=2)
    try:
        responses = [http.get(f"{server.base_url}/me/") for _ in range(8)]
    finally:
        server.emulator.set_config(rate=0)
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert "remaining=0" in limited.headers["RateLimit"]
    assert limited.json()["error"]["rate_reset"] > 0
