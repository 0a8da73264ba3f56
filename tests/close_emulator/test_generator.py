"""The generated data: deterministic, shaped like Close's example Email objects, and realistic
(every status, attachments, RFC 2822 envelope dates, Unicode, late mail, huge bodies)."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from close_emulator import Emulator, EmulatorConfig, EmulatorServer
from close_emulator.generator import Generator, World, make_lead

from .conftest import Api, serve

# The keys of the two objects on Close's "List or filter all Email activities" page
IN_BOTH_EXAMPLES = {
    "_type", "activity_at", "attachments", "bcc", "body_html", "body_text", "body_text_quoted",
    "bulk_email_action_id", "cc", "contact_id", "created_by", "date_created", "date_scheduled",
    "date_sent", "date_updated", "direction", "envelope", "followup_sequence_add_cc_bcc",
    "followup_sequence_delay", "has_reply", "id", "in_reply_to_id", "lead_id", "message_ids",
    "need_smtp_credentials", "opens", "opens_summary", "organization_id", "references",
    "send_as_id", "send_attempts", "sender", "status", "subject", "template_id", "thread_id",
    "to", "updated_by", "updated_by_name", "user_id", "users",
}  # fmt: skip
ONLY_IN_FIRST_EXAMPLE = {
    "created_by_name", "sequence_id", "sequence_name", "sequence_subscription_id", "user_name",
}  # fmt: skip
LISTS = {
    "attachments", "bcc", "cc", "to", "message_ids", "opens", "references", "send_attempts",
    "users",
}  # fmt: skip
BOOLS = {"followup_sequence_add_cc_bcc", "has_reply", "need_smtp_credentials"}
NULLABLE_STRINGS = {
    "bulk_email_action_id", "date_scheduled", "in_reply_to_id", "opens_summary", "send_as_id",
    "template_id", "created_by", "activity_at", "date_sent", "contact_id",
}  # fmt: skip
ENVELOPE_KEYS = {
    "bcc", "cc", "date", "from", "in_reply_to", "message_id", "reply_to", "sender", "subject", "to",
}  # fmt: skip
DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}000)?\+00:00$")
STATUSES = {"inbox", "draft", "scheduled", "outbox", "sent", "error"}
FIXED_NOW_US = 1_790_000_000_123_000  # 2026-09-21


def generated(n: int, seed: int, history_days: int = 730, **config: Any) -> list[dict]:
    """`Emulator.generate` with the clock frozen, so that the output depends on the seed only."""
    emulator = Emulator(EmulatorConfig(rate=0, history_days=history_days, **config))
    emulator.clock.now_us = lambda: FIXED_NOW_US  # type: ignore[method-assign]
    try:
        emulator.generate(n, seed)
        return emulator.all_emails()
    finally:
        emulator.close()


@pytest.fixture(scope="module")
def served() -> Iterator[Api]:
    """5,000 emails over two years, served over HTTP."""
    emulator = Emulator(EmulatorConfig(rate=0))
    emulator.generate(5000, seed=1)
    server = serve(EmulatorServer(emulator))
    yield Api(server)
    server.stop()
    emulator.close()


@pytest.fixture(scope="module")
def emails(served: Api) -> list[dict]:
    """All 5,000 emails, read over HTTP."""
    out = served.emails()
    assert len(out) == 5000
    return out


def test_same_seed_same_data_other_seed_other_data() -> None:
    first = generated(300, seed=5)
    assert first == generated(300, seed=5)
    other = generated(300, seed=6)
    assert {e["id"] for e in first}.isdisjoint(e["id"] for e in other)
    assert [e["subject"] for e in first] != [e["subject"] for e in other]


def test_every_key_of_closes_example_with_its_shape(emails: list[dict]) -> None:
    for email in emails:
        missing = IN_BOTH_EXAMPLES - set(email)
        assert not missing, (email["id"], missing)
        assert email["_type"] == "Email" and email["status"] in STATUSES
        assert email["direction"] in ("incoming", "outgoing")
        for key in LISTS:
            assert isinstance(email[key], list), key
        for key in BOOLS:
            assert isinstance(email[key], bool), key
        for key in NULLABLE_STRINGS:
            assert email[key] is None or isinstance(email[key], str), key
        assert email["followup_sequence_delay"] is None or isinstance(
            email["followup_sequence_delay"], int
        )
        assert all(isinstance(user, str) for user in email["users"])
        assert all(isinstance(addr, str) and "@" in addr for addr in email["to"])
        assert email["id"].startswith("acti_") and email["thread_id"].startswith("acti_")
        assert email["lead_id"].startswith("lead_") and email["user_id"].startswith("user_")
        assert ("created_by_name" in email) == (email["created_by"] is not None)
        sequence = {"sequence_id", "sequence_name", "sequence_subscription_id"} & set(email)
        assert len(sequence) in (0, 3)
        assert email["envelope"] is None or isinstance(email["envelope"], dict)
        # Close's description shows a list of parts, and also `null` (with the HTML parts as
        # one object); the emulator serves both
        if email["body_text_quoted"] is None:
            assert isinstance(email["body_html_quoted"], dict)
        for part in email["body_text_quoted"] or []:
            assert set(part) == {"expand", "text"} and isinstance(part["expand"], bool)
        for attachment in email["attachments"]:
            assert isinstance(attachment["inline_only"], bool) and "content_id" in attachment
    # the keys only the first example has appear too
    seen = set().union(*(set(email) for email in emails))
    assert ONLY_IN_FIRST_EXAMPLE <= seen
    # and so do the null and non-null variants of the nullable ones
    for key in (
        "bulk_email_action_id",
        "template_id",
        "created_by",
        "in_reply_to_id",
        "opens_summary",
    ):
        values = {email[key] is None for email in emails}
        assert values == {True, False}, key


def test_datetimes_are_closes_format(emails: list[dict]) -> None:
    for email in emails:
        for key in ("date_created", "date_updated", "activity_at", "date_sent", "date_scheduled"):
            value = email[key]
            if value is not None:
                assert DATETIME.match(value), (key, value)
        assert email["date_updated"] >= email["date_created"] or (
            datetime.fromisoformat(email["date_updated"])
            >= datetime.fromisoformat(email["date_created"])
        )
    with_fraction = sum("." in email["date_created"] for email in emails)
    assert 0 < with_fraction < len(emails)  # microseconds only when not zero, as on Close


def test_every_status_is_present(emails: list[dict]) -> None:
    counts = Counter(email["status"] for email in emails)
    assert set(counts) == STATUSES
    assert counts["sent"] > counts["draft"] and counts["inbox"] > 1000
    for email in emails:
        if email["status"] == "scheduled":
            assert email["date_scheduled"] == email["activity_at"] is not None
        if email["status"] == "draft":
            assert email["activity_at"] is None and email["date_sent"] is None
        if email["status"] == "error":
            (attempt,) = email["send_attempts"]
            assert set(attempt) == {"date", "error_class", "error_message"}


def test_attachments_zero_to_five(emails: list[dict]) -> None:
    counts = Counter(len(email["attachments"]) for email in emails)
    assert max(counts) <= 5 and {0, 1, 2, 5} <= set(counts)
    assert counts[0] > counts[1] > counts[5]
    for email in emails:
        for item in email["attachments"]:
            assert {"content_type", "filename", "size", "url"} <= set(item)
            assert isinstance(item["size"], int) and item["size"] > 0
            assert item["url"].startswith("https://app.close.com/go/file/")
            assert item["url"].endswith("/" + item["filename"])
            assert ("thumbnail_url" in item) == item["content_type"].startswith("image/")


def test_envelopes_with_rfc_2822_dates(emails: list[dict]) -> None:
    kinds = Counter(
        "none" if e["envelope"] is None else "empty" if e["envelope"] == {} else "full"
        for e in emails
    )
    assert set(kinds) == {"none", "empty", "full"} and kinds["full"] > 4000
    offsets, comments = set(), 0
    for email in emails:
        envelope = email["envelope"]
        if not envelope:
            continue
        assert ENVELOPE_KEYS <= set(envelope)
        assert re.match(
            r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", envelope["date"]
        )
        parsed = parsedate_to_datetime(envelope["date"])
        sent = datetime.fromisoformat(email["date_sent"] or email["date_created"])
        assert parsed == sent.replace(microsecond=0)
        offsets.add(parsed.utcoffset())
        comments += envelope["date"].endswith(" (UTC)")
        assert envelope["subject"] == email["subject"]
        assert all(set(p) == {"email", "name"} for p in envelope["from"] + envelope["to"])
        if email["message_ids"]:
            assert envelope["message_id"] == email["message_ids"][0]
    assert len(offsets) > 3 and timedelta(0) in offsets and comments > 0


def test_unicode_and_emoji(served: Api, emails: list[dict]) -> None:
    subjects = [email["subject"] for email in emails]
    assert any(any(ord(ch) > 0xFFFF for ch in s) for s in subjects)  # emoji, outside the BMP
    assert any("Проверка" in s for s in subjects)
    names = {email["user_name"] for email in emails} | {email["sender"] for email in emails}
    assert any(not name.isascii() for name in names if name)
    raw = served.get("/activity/email/", params={"_limit": 100})
    assert raw.content.isascii()  # escaped like Flask's jsonify; decoding restores it
    assert "\\u" in raw.text


def test_threads_replies_and_opens(emails: list[dict]) -> None:
    by_id = {email["id"]: email for email in emails}
    replies = [email for email in emails if email["in_reply_to_id"]]
    assert len(replies) > 1000
    for reply in replies:
        parent = by_id[reply["in_reply_to_id"]]
        assert parent["thread_id"] == reply["thread_id"] != reply["id"]
        if reply["body_text_quoted"] is None:  # the one-object shape keeps only the new part
            continue
        assert (
            len(reply["body_text_quoted"]) == 2 and reply["body_text_quoted"][1]["expand"] is False
        )
    threads = Counter(email["thread_id"] for email in emails)
    assert max(threads.values()) >= 5
    opened = [email for email in emails if email["opens"]]
    assert opened and all(email["opens_summary"] for email in opened)
    assert all(
        set(item) == {"opened_at", "opened_by", "ip_address", "user_agent"}
        for email in opened
        for item in email["opens"]
    )


def test_late_arriving_mail(emails: list[dict]) -> None:
    delivered = [e for e in emails if e["status"] in ("sent", "inbox")]
    late = [
        e
        for e in delivered
        if datetime.fromisoformat(e["date_created"]) - datetime.fromisoformat(e["activity_at"])
        >= timedelta(days=14)
    ]
    assert 0.005 * len(delivered) < len(late) < 0.05 * len(delivered)
    assert all(e["date_sent"] == e["activity_at"] for e in late)


def test_history_days_bound_the_dates() -> None:
    emails = generated(400, seed=2, history_days=30)
    now = datetime.fromtimestamp(FIXED_NOW_US / 1e6).astimezone()
    created = [datetime.fromisoformat(e["date_created"]) for e in emails]
    assert min(created) >= now - timedelta(days=31) and max(created) <= now
    assert max(datetime.fromisoformat(e["date_updated"]) for e in emails) <= now


def test_a_body_over_one_megabyte_from_ten_thousand_emails() -> None:
    """Checked on the generator directly (no database): about one second."""
    rng = random.Random(0)
    world = World.build(rng, 10)
    leads = [make_lead(rng, world) for _ in range(500)]
    sizes = [
        len(email["body_text"])
        for _, email in Generator(world, leads, 1, FIXED_NOW_US, 730).emails(10_000)
    ]
    assert len(sizes) == 10_000
    big = [size for size in sizes if size > 1_000_000]
    assert len(big) >= 1
    assert sorted(sizes)[-len(big) - 1] < 100_000  # the rest are ordinary emails


def test_no_huge_bodies_in_small_datasets(emails: list[dict]) -> None:
    assert max(len(email["body_text"]) for email in emails) < 100_000


# --- history shapes ----------------------------------------------------------------------------


def created_days(emails: list[dict]) -> Counter[int]:
    """Emails per UTC day of `date_created`, as days before the frozen "now" (0 = today)."""
    today = FIXED_NOW_US // 86_400_000_000
    return Counter(
        today - int(datetime.fromisoformat(e["date_created"]).timestamp() // 86_400) for e in emails
    )


def share_by_quarter(emails: list[dict], history_days: int) -> list[float]:
    """The share of emails in each quarter of the history, oldest quarter first."""
    quarters = Counter(
        min(3, 4 * age // history_days) for age, n in created_days(emails).items() for _ in range(n)
    )
    return [quarters[3 - q] / len(emails) for q in range(4)]


def test_default_shape_is_recent_weighted_and_uniform_is_even() -> None:
    default = share_by_quarter(generated(2000, seed=4, history_days=400), 400)
    assert default[3] > 2 * default[0]  # more recent is likelier
    assert generated(300, seed=4, history_days=400) == generated(
        300, seed=4, history_days=400, history_shape="recent"
    )
    uniform = share_by_quarter(
        generated(2000, seed=4, history_days=400, history_shape="uniform"), 400
    )
    assert all(0.17 < share < 0.33 for share in uniform), uniform


def test_sparse_shape_leaves_long_quiet_gaps() -> None:
    emails = generated(1000, seed=5, history_days=3650, history_shape="sparse")
    days = sorted(created_days(emails))
    assert len(emails) == 1000
    assert len(days) < 3650 // 30 * 4  # about one active day a month, replies spill a little
    assert max(b - a for a, b in zip(days, days[1:], strict=False)) >= 60
    assert days[-1] - days[0] > 0.8 * 3650  # spread over the whole ten years


def test_burst_shape_puts_most_emails_on_one_day() -> None:
    emails = generated(3000, seed=6, history_days=3650, history_shape="burst", burst_fraction=0.9)
    days = created_days(emails)
    burst_day, on_it = days.most_common(1)[0]
    assert on_it > 0.8 * len(emails)
    assert 3650 // 20 <= burst_day <= 3650 - 3650 // 20  # in the middle of the history
    rest = [day for day in days if day != burst_day]
    assert len(rest) > 100 and max(rest) - min(rest) > 0.8 * 3650  # the rest is spread thin
    again = generated(3000, seed=6, history_days=3650, history_shape="burst", burst_fraction=0.9)
    assert again == emails  # reproducible per seed
    other = generated(300, seed=7, history_days=3650, history_shape="burst")
    assert created_days(other).most_common(1)[0][0] != burst_day


def test_mix_shape_and_invalid_shapes() -> None:
    emails = generated(2000, seed=8, history_days=730, history_shape="mix")
    days = created_days(emails)
    assert 0.05 < days.most_common(1)[0][1] / len(emails) < 0.4  # a burst day, not most mail
    assert max(days) > 0.8 * 730
    with pytest.raises(ValueError, match="history shape"):
        generated(10, seed=1, history_shape="lumpy")
    with pytest.raises(ValueError, match="burst_fraction"):
        generated(10, seed=1, history_shape="burst", burst_fraction=1.5)
