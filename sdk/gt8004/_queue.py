"""The memory-bounded queue of encoded entries and the batches cut from it.

Thread-safe: the host's threads offer entries, the worker thread takes batches. The bound counts
everything held in memory — queued entries, put-back batches and the batch in flight — so putting
a failed batch back can never exceed it. Put-back batches keep their ``batch_id`` and are sent
before anything else.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from ._config import TransportConfig
from ._sender import Batch

__all__ = ["EntryQueue"]


class EntryQueue:
    def __init__(self, config: TransportConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self._queue: deque[bytes] = deque()  # encoded entries, oldest first
        self._times: deque[float] = deque()  # their enqueue times (floats: no GC-tracked tuples)
        self._bytes = 0
        self._pending: deque[Batch] = deque()
        self._held_entries = 0  # entries in put-back batches and in flight
        self._held_bytes = 0
        self._batch_limit = config.batch_size  # lowered after a 413, restored on success
        self._byte_limit = config.max_batch_bytes
        self._wake_pending = False

    def offer(self, data: bytes) -> tuple[bool, bool]:
        """Add an entry if the bound allows: (kept, the worker should be woken)."""
        cfg = self.config
        with self.lock:
            if (len(self._queue) + self._held_entries >= cfg.max_queue_entries
                    or self._bytes + self._held_bytes + len(data) > cfg.max_queue_bytes):
                return False, False
            self._queue.append(data)
            self._times.append(time.monotonic())
            self._bytes += len(data)
            n = len(self._queue)
            # Only a full batch wakes the worker: for the age limit it ticks on its own (``due_in``),
            # which saves the host a wake-up (a syscall, then the worker's GIL time) per batch.
            if self._wake_pending or not (n >= self._batch_limit or self._bytes >= self._byte_limit):
                return True, False
            self._wake_pending = True
            return True, True

    def clear_wake(self) -> None:
        with self.lock:
            self._wake_pending = False

    def size(self) -> tuple[int, int]:
        with self.lock:
            return len(self._queue) + self._held_entries, self._bytes + self._held_bytes

    def idle(self) -> bool:
        with self.lock:
            return not self._queue and not self._pending

    def take_pending(self) -> Batch | None:
        with self.lock:
            return self._pending.popleft() if self._pending else None

    def is_due(self, now: float, force: bool, auto_flush: bool) -> bool:
        """Is a batch due: forced (flush/close), full by count or bytes, or old enough?"""
        with self.lock:
            return bool(self._queue) and (
                force or len(self._queue) >= self._batch_limit or self._bytes >= self._byte_limit
                or (auto_flush and now - self._times[0] >= self.config.flush_interval))

    def due_in(self, now: float, auto_flush: bool) -> float | None:
        """Seconds until the worker must look again: until the oldest entry is due, or one
        ``flush_interval`` with nothing queued (an entry arriving meanwhile is then at most that
        old, so it is still sent on time without waking the worker). None: no timer."""
        with self.lock:
            if not auto_flush:
                return None
            if not self._queue:
                return self.config.flush_interval
            return max(0.0, self._times[0] + self.config.flush_interval - now)

    def cut(self) -> Batch | None:
        """The next batch (up to the count and byte limits, at least one entry), now in flight."""
        entries: list[bytes] = []
        size = 0
        with self.lock:
            queue, times = self._queue, self._times
            while queue and len(entries) < self._batch_limit:
                data = queue[0]
                if entries and size + len(data) > self._byte_limit:
                    break
                queue.popleft()
                times.popleft()
                entries.append(data)
                size += len(data)
            if not entries:
                return None
            self._bytes -= size
            self._held_entries += len(entries)
            self._held_bytes += size
        return Batch(entries)

    def put_back(self, *batches: Batch) -> None:
        """Failed (or split) batches go to the front, first one first; they stay held."""
        with self.lock:
            for batch in reversed(batches):
                self._pending.appendleft(batch)

    def release(self, batch: Batch) -> None:
        """The batch left memory (delivered, dropped or spilled)."""
        with self.lock:
            self._held_entries -= len(batch.entries)
            self._held_bytes -= batch.nbytes

    def shrink_limits(self, batch: Batch) -> None:
        """After a 413: cut batches at most half as large from now on."""
        with self.lock:
            self._batch_limit = max(1, len(batch.entries) // 2)
            self._byte_limit = max(1, batch.nbytes // 2)

    def grow_limits(self) -> None:
        with self.lock:
            self._batch_limit = min(self.config.batch_size, self._batch_limit * 2)
            self._byte_limit = min(self.config.max_batch_bytes, self._byte_limit * 2)

    def drain(self) -> list[Batch]:
        """Everything held, as batches (put-back ones keep their ids); the queue is left empty."""
        with self.lock:
            batches = list(self._pending)
            self._pending.clear()
            entries = list(self._queue)
            self._queue.clear()
            self._times.clear()
            self._bytes = self._held_entries = self._held_bytes = 0
        size = self.config.batch_size
        batches.extend(Batch(entries[i:i + size]) for i in range(0, len(entries), size))
        return batches
