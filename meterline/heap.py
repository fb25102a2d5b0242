"""The garbage collector in long-running services: start-up's objects out of its reach.

A gateway or worker process holds a large heap of objects it made while starting (FastAPI and pydantic
models, Faust, aiokafka, numpy, the key registry) and keeps for its lifetime. CPython's full collection
traverses all of them each time: profiled under ingest load (bench/bench_e2e.py, docs/capacity.md
"Where the time goes"), `meterline up` spent ~14 % of its CPU in the collector, and each full collection
stopped the event loop for ~135 ms, which is what ingest p99 showed. ``settle()`` collects once, moves
the survivors to the permanent generation (``gc.freeze``), so later full collections traverse only
what the service made since, and collects the young generation less often: the hot paths allocate a
few containers per entry (a row, a dict) that die young.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["YOUNG_THRESHOLD", "settle"]

log = logging.getLogger(__name__)

#: Allocations (minus deallocations) of tracked containers between two young collections (CPython: 700).
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Freeze what is alive now (call once start-up is done) and space the young collections out."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    log.debug("garbage collector: %d start-up objects frozen, young threshold %d", gc.get_freeze_count(),
              YOUNG_THRESHOLD)
