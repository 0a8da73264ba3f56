"""The garbage collector's settings during a sync, and after it."""

import gc
import threading

from pipelines.collection import THRESHOLDS, rare_collections


def test_collections_are_rare_while_any_sync_runs_and_as_before_after_the_last() -> None:
    before = gc.get_threshold()
    first_inside, second_started, first_done = (
        threading.Event(),
        threading.Event(),
        threading.Event(),
    )
    seen: list[tuple[int, ...]] = []

    def first() -> None:
        with rare_collections():
            first_inside.set()
            second_started.wait(10)
        first_done.set()

    thread = threading.Thread(target=first)
    thread.start()
    first_inside.wait(10)
    assert gc.get_freeze_count() > 0  # the start-up heap is frozen
    with rare_collections():  # a second organization's sync, in this thread
        second_started.set()
        first_done.wait(10)
        seen.append(gc.get_threshold())  # the first sync ended: still rare for this one
    thread.join(10)
    assert seen == [THRESHOLDS]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
