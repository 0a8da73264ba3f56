"""The `_skip` cap, and page drift while a client walks a date window with plain `_skip`."""

from __future__ import annotations

from .conftest import Api


def skip_message(max_skip: int) -> str:
    return (
        "The skip you set is larger than the maximum skip for this resource "
        f"(max_skip = {max_skip}). Please refine your search query."
    )


def test_skip_cap_is_400_with_closes_message(fresh) -> None:
    close = fresh(emails=300, max_skip=200)
    at_cap = close.get("/activity/email/", params={"_skip": 200, "_limit": 100})
    assert at_cap.status_code == 200
    assert len(at_cap.json()["data"]) == 100 and at_cap.json()["has_more"] is False
    over = close.get("/activity/email/", params={"_skip": 201})
    assert over.status_code == 400
    assert over.json() == {"error": skip_message(200)}
    assert "max_skip = " in over.json()["error"]  # what tap-closeio looks for
    # the same cap on /activity/, also for a walk that would otherwise run into it
    assert close.get("/activity/", params={"_skip": 300}).json() == {"error": skip_message(200)}
    walked, statuses, skip = 0, [], 0
    while True:
        response = close.get("/activity/email/", params={"_skip": skip, "_limit": 100})
        statuses.append(response.status_code)
        if response.status_code != 200 or not response.json()["has_more"]:
            break
        walked += len(response.json()["data"])
        skip += 100
    assert statuses == [200, 200, 200]
    close.server.emulator.set_config(max_skip=150)
    assert close.get("/activity/email/", params={"_skip": 200}).json() == {
        "error": skip_message(150)
    }


def window(close: Api) -> dict[str, str]:
    """A date_created window holding every generated email."""
    emails = close.server.emulator.all_emails()
    return {
        "date_created__gte": emails[-1]["date_created"],
        "date_created__lte": emails[0]["date_created"],
    }


def walk(close: Api, params: dict[str, str], limit: int = 50) -> list[list[str]]:
    """The ids of each page, walking with plain _skip until has_more is false."""
    pages, skip = [], 0
    while True:
        response = close.get("/activity/email/", params={**params, "_skip": skip, "_limit": limit})
        assert response.status_code == 200
        page = response.json()
        pages.append([email["id"] for email in page["data"]])
        if not page["has_more"]:
            return pages
        skip += limit


def test_inserts_during_a_walk_repeat_rows(fresh) -> None:
    close = fresh(emails=200, history_days=20)
    params = window(close)
    before = [email["id"] for email in close.server.emulator.all_emails()]
    assert sum(walk(close, params), []) == before  # no drift: every row once

    close.server.emulator.faults.set(drift_after_page=1, drift_insert=3)
    pages = walk(close, params)
    seen = sum(pages, [])
    state = close.server.emulator.faults.as_dict()
    inserted = state["drift_done"]["inserted"]
    assert len(inserted) == 3 and state["drift_done"]["deleted"] == []
    assert state["drift_pages_seen"] == 1
    # the three new rows sort above page 1, so page 2 starts with page 1's last three rows
    assert pages[1][:3] == pages[0][-3:]
    duplicates = sorted({i for i in seen if seen.count(i) > 1})
    assert duplicates == sorted(pages[0][-3:])
    assert set(seen) == set(before)  # nothing new was seen: the inserts were above the walk
    assert len(seen) == 203
    # the inserted emails are real, newer than everything in the window, and inside it
    newest = close.server.emulator.all_emails()[:3]
    assert sorted(email["id"] for email in newest) == sorted(inserted)
    assert all(params["date_created__lte"] >= e["date_created"] for e in newest)
    # a second walk sees every row once, including the inserts (drift happens once)
    again = sum(walk(close, params), [])
    assert len(again) == len(set(again)) == 203


def test_deleting_served_rows_during_a_walk_skips_rows(fresh) -> None:
    close = fresh(emails=200, history_days=20)
    params = window(close)
    before = [email["id"] for email in close.server.emulator.all_emails()]
    close.server.emulator.faults.set(drift_after_page=2, drift_delete=2, drift_delete_served=True)
    seen = sum(walk(close, params), [])
    deleted = close.server.emulator.faults.as_dict()["drift_done"]["deleted"]
    assert deleted == before[98:100]  # the last two rows served (on page 2)
    assert len(seen) == len(set(seen)) == 198  # no duplicates, two rows short
    never_seen = [i for i in before if i not in seen]
    assert never_seen == before[100:102]  # alive, but shifted up into page 2 after it was served
    assert all(close.get(f"/activity/email/{i}/").status_code == 200 for i in never_seen)
    assert all(close.get(f"/activity/email/{i}/").status_code == 404 for i in deleted)


def test_deleting_unserved_rows_and_inserting_together(fresh) -> None:
    close = fresh(emails=200, history_days=20)
    params = window(close)
    before = [email["id"] for email in close.server.emulator.all_emails()]
    close.server.emulator.faults.set(drift_after_page=1, drift_insert=2, drift_delete=2)
    seen = sum(walk(close, params), [])
    done = close.server.emulator.faults.as_dict()["drift_done"]
    assert done["deleted"] == before[50:52]  # the two rows right after page 1
    assert not set(done["deleted"]) & set(seen)
    # two rows inserted above push page 2 down by two (repeating rows 48-49); the two deleted
    # rows are simply gone
    assert seen == before[:50] + before[48:50] + before[52:]
    assert not set(done["inserted"]) & set(seen)


def test_drift_needs_a_date_filter_and_counts_only_email_list_pages(fresh) -> None:
    close = fresh(emails=120, history_days=20)
    close.server.emulator.faults.set(drift_after_page=1, drift_insert=1)
    close.get("/activity/email/", params={"_limit": 10})  # no date filter
    close.get("/activity/", params={**window(close), "_limit": 10})  # not /activity/email/
    assert close.server.emulator.faults.as_dict()["drift_done"] is None
    close.get("/activity/email/", params={**window(close), "_limit": 10})
    assert len(close.server.emulator.faults.as_dict()["drift_done"]["inserted"]) == 1
    assert len(close.server.emulator.all_emails()) == 121
