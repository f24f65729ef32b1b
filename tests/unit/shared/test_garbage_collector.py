"""A service's garbage collector after start-up (shared.runtime.settle_startup_objects)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from shared.runtime import GC_THRESHOLDS, settle_startup_objects


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_restored")
def test_start_up_objects_leave_the_collector_and_it_collects_at_the_service_pace() -> None:
    made_at_start_up = [{"n": n} for n in range(1000)]
    frozen_before = gc.get_freeze_count()

    settle_startup_objects()

    assert gc.get_freeze_count() >= frozen_before + len(made_at_start_up)
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700, "a young collection less often than Python's default"


@pytest.mark.usefixtures("collector_restored")
def test_cycles_made_after_start_up_are_still_collected() -> None:
    settle_startup_objects()

    class Node:
        pass

    first, second = Node(), Node()
    first.other, second.other = second, first  # type: ignore[attr-defined]
    watched = weakref.ref(first)
    del first, second
    assert watched() is not None, "a cycle outlives its names until the collector runs"

    gc.collect()

    assert watched() is None
