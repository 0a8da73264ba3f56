"""Close source settings and constants."""

from datetime import timedelta

DEFAULT_BASE_URL = "https://api.close.com/api/v1"
# Close was founded in 2013; imported mail can be older, so the first walk starts earlier.
DEFAULT_START_DATE = "2005-01-01T00:00:00+00:00"

EMAILS_PATH = "/activity/email/"
ACTIVITIES_PATH = "/activity/"
EVENTS_PATH = "/event/"
ME_PATH = "/me/"

PAGE_LIMIT = 100  # Close's maximum `_limit` on activity lists
EVENT_PAGE_LIMIT = 50  # Close's maximum `_limit` on the event log
ID_BATCH_SIZE = 100  # ids per `id__in` re-fetch (one page)
MAX_SKIP = 250_000  # Close's `max_skip` on /activity/email/
# id__in lists longer than this go into a POST `_params` body (Close's long-URL form)
MAX_URL_ID_LIST_CHARS = 1_500

# Pages fetched at once, all under one rate limiter. At Close's usual 20 requests/s per key
# and ~150-250 ms per page, 8 workers keep the allowance busy; pacing, not the worker count,
# bounds the rate.
DEFAULT_CONCURRENCY = 8
# Emails per load of a first sync or backfill: each chunk is committed with its progress, and
# the next one is fetched while it loads. Bounds memory: about two chunks are held at once.
DEFAULT_CHUNK_EMAILS = 10_000
# A chunk grows up to this many times `DEFAULT_CHUNK_EMAILS` while the workers wait on the
# loader rather than on Close (measured, 100,000 emails, no rate limit: 20,000 per chunk
# 22.6 s, 50,000 per chunk 20.2 s, at the same peak memory: chunks are streamed, not held).
MAX_CHUNK_FACTOR = 10
BATCH_EMAILS = 1_000  # emails shaped into one set of arrow tables
# Shaped batches held ahead of the loader at most (see `_depth`). The lookahead must outlast
# a chunk's load, or the workers stop fetching: at 20 requests/s (2,000 emails/s) the loads
# of a 100,000-email first sync took up to 3.7 s, and with 5 batches and 8 pages (6,300
# emails) the walk stood still for 0.4-0.9 s near its end in every run; with 8 batches it
# kept its pace (measured by the request trace).
PREFETCH_BATCHES = 8
# Decoded pages waiting for the shaping thread at most (1.2 MB each with bodies, three times
# their shaped tables): the shaped batches ahead of the loader hold most of the lookahead.
BUFFER_PAGES = 4
# An idle worker splits a busy span only when about this many rows seem left in it: each split
# costs a partly filled page or two, so splitting small remainders would waste requests.
MIN_SPLIT_ROWS = 1_000
# The walk never reaches closer to "now" than this: emails still being written are left to
# the next run (or to the event log), so a window's upper bound is always safely in the past.
WALK_SAFETY_LAG = timedelta(minutes=2)
# Close: "we recommend to scan the latest five minutes of events" (they appear late, out of order)
EVENT_RESCAN = timedelta(minutes=5)
DEFAULT_EVENT_RETENTION_DAYS = 30.0  # Close keeps 30 days of events

# HTTP behaviour
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
MAX_ATTEMPTS = 8  # per request, for 5xx, dropped connections and timeouts
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
DEFAULT_RATE_WAIT_S = 2.0  # a 429 that carries no wait signal at all (Close's client uses 2 s)
MAX_RATE_WAIT_S = 600.0  # a single 429 wait longer than this is treated as a lasting fault
MAX_THROTTLED_PER_REQUEST = 100  # 429s in a row for one request before giving up
# Pace at this share of the limit Close announces: Close counts in fixed windows, and requests
# spaced evenly at the full rate would now and then land one too many in a window.
PACING_SHARE = 0.97
PROBE_POLL_S = 0.01  # how often workers look whether a group's first answer has arrived

EMAIL_ACTIONS = ("created", "updated", "deleted")
EMAIL_OBJECT_TYPE = "activity.email"
THREAD_OBJECT_TYPE = "activity.email_thread"
LEAD_OBJECT_TYPE = "lead"

BODY_FIELDS = ("body_text", "body_html", "body_text_quoted", "body_html_quoted", "body_preview")
