"""``meterline.heap.settle``: start-up's objects frozen, young collections spaced out, then undone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from meterline import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_freezes_what_is_alive_and_raises_the_young_threshold() -> None:
    kept = [{"alive": i} for i in range(1000)]
    before = gc.get_freeze_count()
    heap.settle()
    assert gc.get_freeze_count() >= before + len(kept)  # the dicts above are now out of the collector's reach
    assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD
