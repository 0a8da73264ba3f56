"""Python's garbage collector during a sync: rare collections, the start-up heap frozen.

Every request's answer becomes thousands of dicts and lists, so CPython's cyclic collector
runs very often, and each full collection scans every object alive (dlt's and pyarrow's
modules, the pages in the buffers) while holding the GIL. Measured on a first sync of 30,000
emails at 150 ms and 20 requests/s: the walk's workers overslept their rate-limit slots by up
to 0.27 s at 17 moments, each at a collection (a watchdog thread saw the late wake-ups inside
`orjson.loads` and `weakref` callbacks), and the walk ran at 17.5 instead of 19.4 requests/s.
With the start-up heap frozen and the thresholds below: 8 such moments, 18.3 requests/s; on
100,000 emails 19.0 requests/s, 1.18 instead of 1.24 times the rate-limit bound. JSON pages
hold no reference cycles, so the cyclic collector has next to nothing to find in them; it
still runs, rarely, for whatever dlt leaves behind.
"""

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# young objects between collections, young collections per middle one, middle per full one
# (CPython's defaults: 700, 10, 10)
THRESHOLDS = (50_000, 50, 1_000)

_lock = threading.Lock()
_active = [0]  # syncs running in this process (organizations may sync in threads at once)
_before: list[tuple[int, int, int]] = []


@contextmanager
def rare_collections() -> Iterator[None]:
    """Freezes the objects alive now (collections skip them) and collects rarely until the
    last sync of the process ends; then the collector is as it was (an Airflow worker, say,
    runs on afterwards)."""
    with _lock:
        if _active[0] == 0:
            _before[:] = [gc.get_threshold()]
            gc.freeze()
            gc.set_threshold(*THRESHOLDS)
        _active[0] += 1
    try:
        yield
    finally:
        with _lock:
            _active[0] -= 1
            if _active[0] == 0:
                gc.set_threshold(*_before[0])
                gc.unfreeze()
