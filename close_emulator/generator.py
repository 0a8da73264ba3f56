"""Seeded generation of a realistic Close organization: users, leads, contacts and email threads.

The output is deterministic for a given (n_emails, seed, generation time). Emails are shaped
exactly like the objects on Close's "List or filter all Email activities" page.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from .clock import DAY_US, US, fmt, rfc2822
from .store import EmailRow

ALPHABET = string.digits + string.ascii_letters
HOUR_US = 3600 * US

FIRST_NAMES = (
    "Phil", "Anna", "José", "Zoë", "Łukasz", "Björn", "Søren", "François", "Mei", "Priya",
    "Kwame", "Yuki", "Siobhán", "Jürgen", "Émilie", "Ólafur", "Ngọc", "Dmitrii", "Aiyana",
    "Fatima", "Noah", "Olivia", "Liam", "Emma", "Mateo", "Chloé", "Ravi", "Hana", "Omar",
    "Sofía", "Lars", "Ines", "Tomás", "Ada", "Grace", "Linus", "伟", "Jamal", "Nora", "Ivan",
)  # fmt: skip
LAST_NAMES = (
    "Freo", "Wayne", "Lafleur", "Müller", "García", "Nowak", "Andersson", "Øvergaard", "Dubois",
    "Sharma", "Mensah", "Tanaka", "O'Brien", "Schäfer", "Lefèvre", "Sigurðsson", "Nguyễn",
    "Ivanov", "Redcloud", "Haddad", "Smith", "Johnson", "Brown", "Rossi", "Kowalski", "Kim",
    "Patel", "Al-Sayed", "Fernández", "Larsen", "Costa", "Lovelace", "Hopper", "Torvalds", "李",
    "Okafor", "Berg", "Petrov", "Moreau", "Yılmaz",
)  # fmt: skip
COMPANY_WORDS = (
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wonka", "Hooli", "Vandelay", "Pied Piper",
    "Soylent", "Tyrell", "Cyberdyne", "Nakatomi", "Gringotts", "Oceanic", "Monarch", "Aperture",
    "Black Mesa", "Dunder Mifflin", "Sterling Cooper", "Bluth", "Massive Dynamic", "Wayne",
    "Prestige", "Krusty", "Zorg", "Nordlicht", "Café Müller", "Émeraude", "Sakura", "Ünal",
)  # fmt: skip
COMPANY_SUFFIXES = ("Inc.", "LLC", "GmbH", "Ltd", "S.A.", "AB", "BV", "Co.", "Group", "株式会社")
TOPICS = (
    "Quick question about {company}", "Pricing for {company}", "Follow-up: our call on {day}",
    "Demo next week?", "🚀 Launching our new plan", "Proposal for {company} ✨", "Invoice #{n}",
    "Meeting notes 📅", "Welcome to Close!", "Partnership opportunity", "¿Podemos hablar?",
    "Проверка связи", "Your trial ends soon ⏳", "Angebot für {company}", "Contract renewal",
    "Intro: {first} <> {company}", "Re-engaging {company}", "Case study you asked for 📎",
    "Testing testing!!!!", "Onboarding checklist ✅",
)  # fmt: skip
SENTENCES = (
    "Thanks for taking the time to chat earlier.",
    "I wanted to follow up on our conversation from last week.",
    "Let me know if Tuesday or Wednesday works better for a quick call.",
    "I've attached the proposal we discussed — happy to walk you through it.",
    "Our team can get you set up in less than a day.",
    "Could you share a bit more about your current workflow?",
    "This is rad. <3",
    "We're seeing great results with companies like yours 🎉.",
    "Pricing starts at $49 per user per month, billed annually.",
    "Is there anyone else on your team I should loop in?",
    "Sounds good, talk soon!",
    "Unfortunately the timing isn't right for us this quarter.",
    "Can you send over the contract? Legal wants to review it.",
    "Merci beaucoup pour votre retour rapide.",
    "Vielen Dank für Ihre Nachricht, ich melde mich nächste Woche.",
    "We had a few questions about the API limits & integrations.",
    "Please find the updated numbers below.",
    "I'm out of office until Monday; I'll reply when I'm back. 🌴",
)
ATTACHMENT_TYPES = (
    ("application/pdf", "proposal.pdf"),
    ("image/png", "screenshot.png"),
    ("image/jpeg", "photo.jpg"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "contract.docx"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "pricing.xlsx"),
    ("text/csv", "export.csv"),
    ("text/calendar", "invite.ics"),
    ("application/zip", "assets.zip"),
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
)
SEND_ERRORS = (
    ("SMTPRecipientsRefused", "{'%s': (550, b'5.1.1 The email account does not exist.')}"),
    ("SMTPAuthenticationError", "(535, b'5.7.8 Username and Password not accepted.')"),
    ("SMTPServerDisconnected", "Connection unexpectedly closed"),
    ("TimeoutError", "timed out"),
)
TZ_OFFSETS = (0, 0, 0, -300, -240, -420, -480, 60, 120, 330, 540, 600, 660, -180)
THREAD_SIZES = (1, 2, 3, 4, 5, 6)
THREAD_WEIGHTS = (38, 27, 16, 10, 6, 3)
REPLY_GAP_US = 20 * HOUR_US  # mean time between the emails of a thread
BURST_REPLY_GAP_US = 20 * 60 * US  # the same on a burst day (replies to a mass mailing)
# how thread start times spread over the history; "recent" is the original (default) shape
HISTORY_SHAPES = ("recent", "uniform", "sparse", "burst", "mix")
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 14, 13, 10, 12, 13, 13, 12, 9, 6, 4, 3, 2, 2, 1)
STATUSES = ("inbox", "draft", "scheduled", "outbox", "sent", "error")
EMAIL_FIELDS = frozenset(
    """_type id organization_id lead_id contact_id user_id user_name created_by created_by_name
    updated_by updated_by_name date_created date_updated activity_at date_sent date_scheduled
    direction status subject sender to cc bcc body_text body_html body_preview body_text_quoted
    body_html_quoted attachments envelope opens opens_summary send_attempts message_ids references
    in_reply_to_id thread_id has_reply need_smtp_credentials email_account_id send_as_id
    template_id template_name followup_sequence_id followup_sequence_delay
    followup_sequence_add_cc_bcc bulk_email_action_id users sequence_id sequence_name
    sequence_subscription_id""".split()
)


_ID_TABLE = bytes(ord(ALPHABET[i % 62]) for i in range(256))
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def new_id(rng: random.Random, prefix: str, length: int = 43) -> str:
    """A Close-style id: prefix plus base62 characters."""
    return prefix + rng.randbytes(length).translate(_ID_TABLE).decode()


def to_json(obj: Any) -> str:
    """Compact JSON text as stored and served (non-ASCII escaped, like Flask's jsonify)."""
    return _ENCODER.encode(obj)


def _shape_roll(key: str) -> int:
    """0..99 from a stable hash of `key`: picks a documented variant without using the rng
    (so a seed keeps generating exactly the data it did before the variants existed)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100


def _quoted_shape(email_id: str, text: list[dict], html: list[dict]) -> dict[str, Any]:
    """Close's API description also shows `body_html_quoted` as one object and
    `body_text_quoted: null`; one email in ten comes that way."""
    if _shape_roll(email_id) >= 10:
        return {}
    return {"body_text_quoted": None, "body_html_quoted": html[0]}


def _inline_shape(key: str, content_type: str) -> dict[str, Any]:
    """Attachments as Close documents them: `content_id` (set for inline images) and
    `inline_only`."""
    inline = content_type.startswith("image/") and _shape_roll(key) < 50
    return {"content_id": f"<{key}@mail.close.com>" if inline else None, "inline_only": inline}


def address(person: dict) -> str:
    """`Name <addr>` (or just the address when there is no name), as in the top-level `sender`."""
    return f"{person['name']} <{person['email']}>" if person["name"] else person["email"]


def opens_summary(opens: list[dict]) -> str | None:
    """Close's human summary of the opens list; None when there are none."""
    if not opens:
        return None
    who = opens[-1]["opened_by"].split(" <")[0]
    return f"Opened {len(opens)} time{'s' if len(opens) > 1 else ''} by {who}"


@dataclass
class World:
    """The organization and its users, sequences and templates."""

    organization_id: str
    organization_name: str
    users: list[dict[str, str]]
    sequences: list[list[str]]
    templates: list[list[str]]

    @classmethod
    def build(cls, rng: random.Random, n_users: int) -> World:
        """A new organization with `n_users` users."""
        org_name = f"{rng.choice(COMPANY_WORDS)} Sales"
        domain = _domain(org_name)
        users = []
        for _ in range(n_users):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            users.append(
                {
                    "id": new_id(rng, "user_"),
                    "first_name": first,
                    "last_name": last,
                    "name": f"{first} {last}",
                    "email": f"{_slug(first)}.{_slug(last)}{rng.randrange(100)}@{domain}",
                    "email_account_id": new_id(rng, "emailacct_"),
                    "tz": rng.choice(TZ_OFFSETS),
                }
            )
        sequences = [
            [new_id(rng, "seq_", 22), name]
            for name in ("Cold outreach Q1", "Trial nurture", "Webinar follow-up 🎥", "Win-back")
        ]
        templates = [
            [new_id(rng, "tmpl_"), name]
            for name in ("Intro", "Pricing", "Follow-up #1", "Follow-up #2", "Breakup email")
        ]
        return cls(new_id(rng, "orga_"), org_name, users, sequences, templates)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (for the meta table)."""
        return asdict(self)

    def user(self, user_id: str | None) -> dict[str, str] | None:
        """The user with this id, or None."""
        return next((user for user in self.users if user["id"] == user_id), None)

    def person(self, user: dict[str, str]) -> dict[str, str]:
        """A user as an envelope entry."""
        return {"email": user["email"], "name": user["name"]}


def make_lead(rng: random.Random, world: World) -> dict[str, Any]:
    """A lead with one to three contacts."""
    company = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_SUFFIXES)}"
    domain = _domain(company)
    contacts = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        contacts.append(
            {
                "id": new_id(rng, "cont_"),
                "name": f"{first} {last}" if rng.random() < 0.8 else "",
                "email": f"{_slug(first)}{rng.randrange(1000)}@{domain}",
                "tz": rng.choice(TZ_OFFSETS),
            }
        )
    return {
        "id": new_id(rng, "lead_"),
        "display_name": company,
        "name": company,
        "organization_id": world.organization_id,
        "url": f"https://{domain}",
        "user_id": rng.choice(world.users)["id"],
        "contacts": contacts,
    }


def body_parts(rng: random.Random, greet: str, sign: str, size: int = 0) -> tuple[str, str]:
    """A plain text body and its HTML; `size` forces a very long body of about that many chars."""
    lines = [f"Hi {greet}," if greet else "Hi,", ""]
    lines += rng.sample(SENTENCES, rng.randint(1, 4))
    if size:
        para = " ".join(rng.choices(SENTENCES, k=40))
        lines += [f"{i:05d} {para}" for i in range(size // (len(para) + 7) + 1)]
    lines += ["", "Best,", sign]
    text = "\n".join(lines)
    html = "<div>" + _escape(text).replace("\n", "<br>\n") + "</div>"
    return text, html


def _first_part(quoted: list[dict] | dict | None) -> dict:
    """The visible part of a `body_*_quoted` value: a list of parts, one object, or null."""
    if isinstance(quoted, dict):
        return quoted
    return (quoted or [{}])[0]


def visible_body(email: dict) -> tuple[str, str]:
    """The new (not quoted) part of an email's text and HTML bodies."""
    text = _first_part(email.get("body_text_quoted")).get("text") or email.get("body_text") or ""
    html = _first_part(email.get("body_html_quoted")).get("html") or email.get("body_html") or ""
    return text, html


def sync_bodies(email: dict, changes: dict) -> None:
    """After `body_text`/`body_html` were set directly, derive the fields that repeat them."""
    if "body_text" in changes:
        text = email["body_text"] or ""
        if "body_html" not in changes:
            email["body_html"] = "<div>" + _escape(text).replace("\n", "<br>\n") + "</div>"
        if "body_preview" not in changes:
            email["body_preview"] = " ".join(text.split())[:120]
        if "body_text_quoted" not in changes:
            email["body_text_quoted"] = [{"expand": True, "text": text}]
    if ("body_text" in changes or "body_html" in changes) and "body_html_quoted" not in changes:
        email["body_html_quoted"] = [{"expand": True, "html": email["body_html"] or ""}]


class EmailFactory:
    """Builds email objects for one world."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng

    def compose(
        self,
        *,
        email_id: str,
        lead: dict | None,
        contact: dict | None,
        user: dict | None,
        direction: str,
        status: str,
        subject: str,
        date_created: int,
        date_updated: int,
        date_sent: int | None = None,
        date_scheduled: int | None = None,
        activity_at: int | None = None,
        thread_id: str | None = None,
        reply_to: dict | None = None,
        body: tuple[str, str] | None = None,
        envelope_kind: str = "full",
    ) -> dict[str, Any]:
        """One email object with every key Close returns; `reply_to` is the email answered."""
        rng = self.rng
        world = self.world
        org = world.organization_id
        user_person = world.person(user) if user else {"email": "unknown@example.com", "name": ""}
        contact_person = (
            {"email": contact["email"], "name": contact["name"]}
            if contact
            else {"email": f"someone{rng.randrange(10**4)}@example.org", "name": ""}
        )
        outgoing = direction == "outgoing"
        sender, recipient = (
            (user_person, contact_person) if outgoing else (contact_person, user_person)
        )
        cc = [] if rng.random() < 0.85 else [self._stranger()]
        bcc = [] if not outgoing or rng.random() < 0.95 else [self._stranger()]
        if body is None:
            body = body_parts(rng, recipient["name"].split(" ")[0], sender["name"])
        text, html = body
        quoted_text = [{"expand": True, "text": text}]
        quoted_html = [{"expand": True, "html": html}]
        references: list[str] = []
        in_reply_to_msg = None
        if reply_to is not None:
            prev_text, prev_html = visible_body(reply_to)
            when = reply_to["envelope"].get("date") if reply_to["envelope"] else None
            quote = f"On {when or reply_to['date_created']}, {reply_to['sender']} wrote:\n"
            quote += "\n".join("> " + line for line in prev_text.splitlines())
            text = f"{text}\n\n{quote}"
            html += f'<div class="gmail_quote"><blockquote>{prev_html}</blockquote></div>'
            quoted_text.append({"expand": False, "text": quote})
            quoted_html.append(
                {"expand": False, "html": f"<blockquote>{_escape(quote)}</blockquote>"}
            )
            references = (reply_to["references"] + reply_to["message_ids"])[-10:]
            in_reply_to_msg = reply_to["message_ids"][0] if reply_to["message_ids"] else None
        delivered = status in ("sent", "inbox")
        message_id = self._message_id(outgoing, date_sent or date_created) if delivered else None
        envelope: dict[str, Any] | None = None
        if envelope_kind == "empty":
            envelope = {}
        elif envelope_kind == "full":
            tz = (user or {}).get("tz", 0) if outgoing else (contact or {}).get("tz", 0)
            envelope = {
                "from": [sender],
                "sender": [sender],
                "to": [recipient],
                "cc": cc,
                "bcc": bcc,
                "reply_to": [] if rng.random() < 0.95 else [sender],
                "subject": subject,
                "date": rfc2822(
                    date_sent or date_created, tz, comment=tz == 0 and rng.random() < 0.2
                ),
                "message_id": message_id,
                "in_reply_to": in_reply_to_msg,
                "is_autoreply": not outgoing and rng.random() < 0.02,
            }
        sequence = template = None
        if outgoing and rng.random() < 0.15:
            sequence = rng.choice(world.sequences)
            template = rng.choice(world.templates)
        elif outgoing and rng.random() < 0.1:
            template = rng.choice(world.templates)
        created_by = user if outgoing and rng.random() < 0.9 else None
        updated_by = user if rng.random() < 0.9 else None
        email: dict[str, Any] = {
            "_type": "Email",
            "id": email_id,
            "organization_id": org,
            "lead_id": lead["id"] if lead else None,
            "contact_id": contact["id"] if contact else None,
            "user_id": user["id"] if user else None,
            "user_name": user["name"] if user else None,
            "created_by": created_by["id"] if created_by else None,
            "updated_by": updated_by["id"] if updated_by else None,
            "updated_by_name": updated_by["name"] if updated_by else None,
            "date_created": fmt(date_created),
            "date_updated": fmt(date_updated),
            "activity_at": fmt(activity_at),
            "date_sent": fmt(date_sent),
            "date_scheduled": fmt(date_scheduled),
            "direction": direction,
            "status": status,
            "subject": subject,
            "sender": address(sender),
            "to": [recipient["email"]],
            "cc": [person["email"] for person in cc],
            "bcc": [person["email"] for person in bcc],
            "body_text": text,
            "body_html": html,
            "body_preview": " ".join(body[0].split())[:120],
            "body_text_quoted": quoted_text,
            "body_html_quoted": quoted_html,
            "attachments": self._attachments(email_id),
            **_quoted_shape(email_id, quoted_text, quoted_html),
            "envelope": envelope,
            "opens": [],
            "opens_summary": None,
            "send_attempts": [],
            "message_ids": [message_id] if message_id else [],
            "references": references,
            "in_reply_to_id": reply_to["id"] if reply_to else None,
            "thread_id": thread_id or email_id,
            "has_reply": False,
            "need_smtp_credentials": False,
            "email_account_id": user["email_account_id"] if user and rng.random() < 0.95 else None,
            "send_as_id": None,
            "template_id": template[0] if template else None,
            "template_name": template[1] if template else None,
            "followup_sequence_id": None,
            "followup_sequence_delay": None,
            "followup_sequence_add_cc_bcc": False,
            "bulk_email_action_id": new_id(rng, "bulk_", 22)
            if outgoing and not sequence and rng.random() < 0.03
            else None,
            "users": [user["id"]] if user and rng.random() < 0.1 else [],
        }
        if created_by:
            email["created_by_name"] = created_by["name"]
        if sequence:
            email["sequence_id"] = sequence[0]
            email["sequence_name"] = sequence[1]
            email["sequence_subscription_id"] = new_id(rng, "sub_", 22)
        if status == "error":
            error_class, message = rng.choice(SEND_ERRORS)
            email["send_attempts"] = [
                {
                    "date": fmt(date_created + rng.randint(1, 120) * US),
                    "error_class": error_class,
                    "error_message": message.replace("%s", recipient["email"]),
                }
            ]
        return email

    def open_entry(self, email: dict, at_us: int) -> dict[str, str]:
        """One open of an outgoing email by its recipient."""
        rng = self.rng
        recipients = (email.get("envelope") or {}).get("to") or [
            {"email": addr, "name": ""} for addr in email.get("to") or ["unknown@example.com"]
        ]
        octets = (rng.choice((66, 74, 203, 185)), rng.randrange(256), rng.randrange(256))
        return {
            "opened_at": fmt(at_us),
            "opened_by": address(recipients[0]),
            "ip_address": ".".join(map(str, octets)) + f".{rng.randrange(1, 255)}",
            "user_agent": rng.choice(USER_AGENTS),
        }

    def _attachments(self, email_id: str) -> list[dict[str, Any]]:
        rng = self.rng
        roll = rng.random()
        count = 0 if roll < 0.8 else 1 if roll < 0.92 else rng.randint(2, 5)
        result = []
        for _ in range(count):
            content_type, filename = rng.choice(ATTACHMENT_TYPES)
            key = new_id(rng, "", 22)
            base = f"https://app.close.com/go/file/persisted/{self.world.organization_id}"
            item = {
                "content_type": content_type,
                "filename": filename,
                "size": rng.randint(800, 4_000_000),
                "url": f"{base}/activity.email/{email_id}/{key}/{filename}",
            }
            if content_type.startswith("image/"):
                item["thumbnail_url"] = f"{base}/thumbnail/{key}/{filename}"
            item.update(_inline_shape(key, content_type))
            result.append(item)
        return result

    def _message_id(self, outgoing: bool, at_us: int) -> str:
        rng = self.rng
        if outgoing and rng.random() < 0.6:
            return (
                f"<{at_us // 1000}.{rng.randrange(10**5)}.{rng.randrange(10**5)}@smtpgw.close.com>"
            )
        if rng.random() < 0.6:
            return f"<CA{new_id(rng, '', 40)}@mail.gmail.com>"
        return f"<{rng.getrandbits(128):032x}@EUR01.prod.outlook.com>"

    def _stranger(self) -> dict[str, str]:
        rng = self.rng
        first = rng.choice(FIRST_NAMES)
        return {
            "email": f"{_slug(first)}{rng.randrange(100)}@example.com",
            "name": first if rng.random() < 0.7 else "",
        }


class Generator:
    """Generates the emails of a world, thread by thread."""

    def __init__(
        self,
        world: World,
        leads: list[dict],
        seed: int,
        now_us: int,
        history_days: int,
        shape: str = "recent",
        burst_fraction: float = 0.9,
    ) -> None:
        if shape not in HISTORY_SHAPES:
            raise ValueError(f"history shape must be one of {', '.join(HISTORY_SHAPES)}")
        if not 0 <= burst_fraction <= 1:
            raise ValueError("burst_fraction must lie in [0, 1]")
        self.rng = random.Random(f"emails-{seed}")
        self.factory = EmailFactory(world, self.rng)
        self.leads = leads
        self.users = {user["id"]: user for user in world.users}
        self.now_us = now_us
        self.history_us = history_days * DAY_US
        self.shape = shape
        self.burst_fraction = burst_fraction
        # The shape's fixed days come from their own generator, so that choosing them does not
        # shift the per-email draws (the "recent" shape must stay byte-identical per seed).
        shape_rng = random.Random(f"shape-{seed}")
        days = max(1, history_days)
        today = now_us // DAY_US
        self.burst_day = today - shape_rng.randint(days // 20, days - days // 20)  # mid-history
        # sparse: about one active day a month, at random, with long quiet gaps between them
        self.active_days = sorted(
            today - shape_rng.randrange(days) for _ in range(max(1, days // 30))
        )

    def emails(self, n: int) -> Iterator[tuple[EmailRow, dict[str, Any]]]:
        """Yield `n` (storage row, email object) pairs."""
        rng = self.rng
        n_big = max(1 if n >= 10_000 else 0, round(n * 3 / 100_000))
        big = set(rng.sample(range(n), n_big)) if n_big else set()
        unsent = ["error", "outbox", "scheduled", "draft"]  # make sure every status exists
        produced = 0
        while produced < n:
            for email, dc, aa, du in self._thread(n - produced, unsent.pop() if unsent else None):
                if produced in big:
                    self._inflate(email)
                row = (
                    email["id"],
                    dc,
                    aa,
                    du,
                    email["lead_id"],
                    email["contact_id"],
                    email["user_id"],
                    email["organization_id"],
                    email["thread_id"],
                    email["status"],
                    to_json(email),
                )
                yield row, email
                produced += 1

    def _inflate(self, email: dict) -> None:
        """Give the email a body over 1 MB (a pasted report or newsletter)."""
        greet = email["to"][0].split("@")[0] if email["to"] else ""
        text, html = body_parts(self.rng, greet, email["sender"], size=1_100_000)
        email.update(body_text=text, body_html=html)
        email["body_text_quoted"] = [{"expand": True, "text": text}]
        email["body_html_quoted"] = [{"expand": True, "html": html}]

    def _thread_start(self) -> tuple[int, int]:
        """A thread's start time and the mean gap between its emails, by history shape."""
        shape = self.shape
        if shape == "mix":  # a realistic blend: mostly recent, some even, quiet and burst spells
            shape = self.rng.choices(("recent", "uniform", "sparse", "burst"), (50, 20, 15, 15))[0]
        if shape == "recent":
            return self._start_time(), REPLY_GAP_US
        if shape == "uniform":
            return self._on_day(self._uniform_day()), REPLY_GAP_US
        if shape == "sparse":
            return self._on_day(self.rng.choice(self.active_days)), REPLY_GAP_US
        if self.rng.random() < self.burst_fraction:
            # a mass mailing: replies come within the hour, so the thread stays on the day
            return self._on_day(self.burst_day), BURST_REPLY_GAP_US
        return self._on_day(self._uniform_day()), REPLY_GAP_US

    def _uniform_day(self) -> int:
        """A day (days since the epoch) drawn evenly from the history."""
        return (self.now_us - int(self.history_us * self.rng.random())) // DAY_US

    def _on_day(self, day: int) -> int:
        """A time on `day` in business hours, never later than a few seconds ago."""
        rng = self.rng
        hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
        start = day * DAY_US + hour * HOUR_US + rng.randrange(HOUR_US)
        return min(start, self.now_us - rng.randint(5, 3600) * US)

    def _start_time(self) -> int:
        """A thread start time: more recent is likelier, business hours, few weekends."""
        rng = self.rng
        while True:
            age = self.history_us * (1 - rng.random() ** 0.6)
            day = (self.now_us - int(age)) // DAY_US
            if (day + 3) % 7 < 5 or rng.random() < 0.25:  # 1970-01-01 was a Thursday
                break
        hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
        start = day * DAY_US + hour * HOUR_US + rng.randrange(HOUR_US)
        return min(start, self.now_us - rng.randint(5, 3600) * US)

    def _thread(self, room: int, unsent: str | None) -> list[tuple[dict, int, int | None, int]]:
        """One thread of up to `room` emails (`unsent`: one recent email with that status)."""
        rng = self.rng
        now = self.now_us
        lead = rng.choice(self.leads)
        user = self.users[lead["user_id"]]
        contact = rng.choice(lead["contacts"]) if rng.random() < 0.96 else None
        size = min(room, rng.choices(THREAD_SIZES, THREAD_WEIGHTS)[0])
        subject = rng.choice(TOPICS).format(
            company=lead["display_name"],
            day=rng.choice(("Monday", "Tuesday", "Friday")),
            n=rng.randrange(1000, 99999),
            first=contact["name"].split(" ")[0] if contact and contact["name"] else "you",
        )
        direction = "outgoing" if rng.random() < 0.65 else "incoming"
        t, gap_us = self._thread_start()
        if unsent:
            size, direction, t = 1, "outgoing", now - rng.randint(600, 2 * 86_400) * US
        result: list[tuple[dict, int, int | None, int]] = []
        previous: dict | None = None
        for i in range(size):
            if i:
                t += int(rng.expovariate(1 / gap_us)) + 60 * US
                if t > now - 60 * US:
                    break
                if rng.random() < 0.85:
                    direction = "incoming" if direction == "outgoing" else "outgoing"
            last = i == size - 1
            status = unsent or self._status(direction, last, now - t)
            email, dc, aa = self._email(
                lead, contact, user, direction, status, subject, t, previous
            )
            result.append((email, dc, aa, dc))
            previous = email
            subject = subject if subject.startswith("Re: ") else f"Re: {subject}"
        return self._finish(result)

    def _status(self, direction: str, last: bool, age_us: int) -> str:
        if direction == "incoming":
            return "inbox"
        if not last:
            return "sent"
        roll = self.rng.random()
        if age_us < 7 * DAY_US:  # recent threads may still end in an unsent email
            for status, below in (("draft", 0.1), ("scheduled", 0.16), ("outbox", 0.18)):
                if roll < below:
                    return status
            return "error" if roll < 0.2 else "sent"
        return "draft" if roll < 0.015 else "error" if roll < 0.025 else "sent"

    def _email(
        self,
        lead: dict,
        contact: dict | None,
        user: dict,
        direction: str,
        status: str,
        subject: str,
        t: int,
        previous: dict | None,
    ) -> tuple[dict, int, int | None]:
        """One email at time `t`; returns it with its date_created and activity_at."""
        rng = self.rng
        ms = t - t % 1000
        synced = rng.random() < (0.5 if direction == "incoming" else 0.15)
        sent = aa = scheduled = None
        if status in ("sent", "inbox"):
            sent = aa = t - t % US if synced else ms
            dc = sent if synced or rng.random() < 0.6 else sent - rng.randint(2_000, 900_000) * 1000
            if rng.random() < 0.02:  # synced late: created (synced) weeks after it happened
                dc = min(
                    self.now_us - rng.randint(1, 600) * US, sent + rng.randint(14, 60) * DAY_US
                )
                dc -= dc % 1000
        else:
            dc = ms
            if status == "scheduled":
                scheduled = aa = self.now_us + rng.randint(3_600, 10 * 86_400) * US
                scheduled -= scheduled % 1000
            elif status in ("outbox", "error"):
                aa = dc
        envelope = "full"
        if status in ("draft", "scheduled", "outbox"):
            envelope = "empty" if rng.random() < 0.5 else "none"
        elif rng.random() < 0.04:
            envelope = "none" if rng.random() < 0.75 else "empty"
        email = self.factory.compose(
            email_id=new_id(rng, "acti_"),
            lead=lead,
            contact=contact,
            user=user,
            direction=direction,
            status=status,
            subject=subject,
            date_created=dc,
            date_updated=dc,
            date_sent=sent,
            date_scheduled=scheduled,
            activity_at=aa,
            thread_id=previous["thread_id"] if previous else None,
            reply_to=previous,
            envelope_kind=envelope,
        )
        return email, dc, aa

    def _finish(self, thread: list[tuple[dict, int, int | None, int]]) -> list:
        """Add opens and replies, then set date_updated after everything that touched an email."""
        rng = self.rng
        now = self.now_us
        out = []
        for i, (email, dc, aa, du) in enumerate(thread):
            du = dc + rng.randint(0, 90_000) * 1000
            if rng.random() < 0.2:
                du += int(rng.expovariate(1 / (30 * DAY_US)))
            nxt = thread[i + 1] if i + 1 < len(thread) else None
            if email["direction"] == "outgoing" and nxt and nxt[0]["direction"] == "incoming":
                email["has_reply"] = True
                du = max(du, nxt[1])
            if email["status"] == "sent" and rng.random() < 0.45:
                sent = aa or dc
                times = sorted(
                    sent + int(rng.expovariate(1 / (6 * HOUR_US))) for _ in range(rng.randint(1, 5))
                )
                times = [x - x % 1000 for x in times if x < now]
                email["opens"] = [self.factory.open_entry(email, x) for x in times]
                email["opens_summary"] = opens_summary(email["opens"])
                if times:
                    du = max(du, times[-1])
            du = min(max(du, dc), now - 1000)
            du = max(du - du % 1000, dc)
            email["date_updated"] = fmt(du)
            out.append((email, dc, aa, du))
        return out


def _slug(name: str) -> str:
    ascii_only = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum())
    return ascii_only or "x"


def _domain(company: str) -> str:
    """A domain for a company name (the TLD derived from the name)."""
    tld = (".com", ".io", ".de", ".co", ".fr", ".net")[sum(map(ord, company)) % 6]
    return _slug(company.split(" ")[0]) + tld


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
