"""On-disk spool: entries beyond the memory bound, and what is unsent at exit, survive a restart.

A spool directory holds segment files of JSON lines (one encoded entry per line):

- ``<t>-<batch_id>.<pid>.tmp``  — being filled by process ``pid`` (overflowing entries);
- ``<t>-<batch_id>.seg``        — sealed: a batch waiting to be sent;
- ``<t>-<batch_id>.<pid>.sending`` — claimed by process ``pid``, in flight.

The batch id is part of the name, so a batch resent after a crash keeps its id and the server
can deduplicate it. Every entry is written with one ``write()`` system call, so a SIGKILL loses
nothing already accepted (no fsync: a power cut may lose the last writes). Files of a process that
no longer runs are recovered (renamed to ``.seg``); a torn last line is skipped. Several processes
may share one directory: only ``.seg`` files are claimed, by an atomic rename.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import orjson

from ._sender import Batch, new_batch_id

__all__ = ["Spool"]

log = logging.getLogger(__name__)

SCAN_INTERVAL = 5.0  # seconds between directory listings when no segment is known to wait


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """A bounded directory of batches; thread-safe within one process."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, segment_entries: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_entries = max(1, segment_entries)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._fd: int | None = None
        self._tmp_path: Path | None = None
        self._tmp_entries = 0
        self._bytes = 0
        self._maybe_sealed = True  # a .seg file may exist: worth listing the directory
        self._next_scan = 0.0      # ... and list it now and then anyway (other processes' segments)
        self.recover()

    # -- bookkeeping -------------------------------------------------------------------------
    def after_fork(self) -> None:
        """In a forked child: forget the parent's open segment (the parent still owns it)."""
        self._lock = threading.Lock()
        self._pid = os.getpid()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd, self._tmp_path, self._tmp_entries = None, None, 0

    def recover(self) -> int:
        """Rename the segments of dead processes to ``.seg``; recount the spool size."""
        recovered = 0
        with self._lock:
            for path in list(self.directory.iterdir()):
                name = path.name
                if name.endswith((".tmp", ".sending")):
                    stem, pid_text, _ = name.rsplit(".", 2)
                    if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                        try:
                            path.rename(self.directory / f"{stem}.seg")
                            recovered += 1
                        except FileNotFoundError:
                            continue
            total = 0
            for path in self.directory.iterdir():
                try:
                    total += path.stat().st_size
                except FileNotFoundError:
                    pass
            self._bytes = total
        self._maybe_sealed = True
        if recovered:
            log.info("gt8004: recovered %d spooled segment(s) in %s", recovered, self.directory)
        return recovered

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def pending(self) -> int:
        """Number of sealed segments waiting (plus the open one if it holds entries)."""
        count = sum(1 for p in self.directory.glob("*.seg"))
        return count + (1 if self._tmp_entries else 0)

    # -- writing -----------------------------------------------------------------------------
    def append(self, data: bytes) -> bool:
        """Add one encoded entry; False when the spool is full or unwritable."""
        line = data + b"\n"
        with self._lock:
            if self._bytes + len(line) > self.max_bytes:
                return False
            try:
                if self._fd is None:
                    self._tmp_path = self.directory / f"{time.time_ns():020d}-{new_batch_id()}.{self._pid}.tmp"
                    self._fd = os.open(self._tmp_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.write(self._fd, line)
            except OSError as exc:
                log.warning("gt8004: spool write failed: %s", exc)
                return False
            self._bytes += len(line)
            self._tmp_entries += 1
            if self._tmp_entries >= self.segment_entries:
                self._seal_locked()
            return True

    def seal(self) -> None:
        """Close the open segment so it can be sent."""
        with self._lock:
            self._seal_locked()

    def _seal_locked(self) -> None:
        if self._fd is None or self._tmp_path is None:
            return
        self._maybe_sealed = True
        os.close(self._fd)
        stem = self._tmp_path.name.rsplit(".", 2)[0]
        self._tmp_path.rename(self.directory / f"{stem}.seg")
        self._fd, self._tmp_path, self._tmp_entries = None, None, 0

    def write_batch(self, batch: Batch) -> bool:
        """Store a whole batch (keeping its id) as a sealed segment; False when it does not fit."""
        data = b"".join(e + b"\n" for e in batch.entries)
        with self._lock:
            if self._bytes + len(data) > self.max_bytes:
                return False
            name = f"{time.time_ns():020d}-{batch.batch_id}"
            tmp = self.directory / f"{name}.{self._pid}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                tmp.rename(self.directory / f"{name}.seg")
                self._maybe_sealed = True
            except OSError as exc:
                log.warning("gt8004: spool write failed: %s", exc)
                return False
            self._bytes += len(data)
            return True

    # -- sending -----------------------------------------------------------------------------
    def claim(self) -> Batch | None:
        """Take the oldest sealed segment (sealing the open one if nothing else waits)."""
        with self._lock:
            now = time.monotonic()
            if not self._maybe_sealed and not self._tmp_entries and now < self._next_scan:
                return None  # nothing known to wait: skip the directory listing (once per batch)
            self._next_scan = now + SCAN_INTERVAL
            segments = sorted(self.directory.glob("*.seg"))
            self._maybe_sealed = bool(segments)
            if not segments and self._tmp_entries:
                self._seal_locked()
                segments = sorted(self.directory.glob("*.seg"))
            for seg in segments:
                stem = seg.name[: -len(".seg")]
                claimed = self.directory / f"{stem}.{self._pid}.sending"
                try:
                    seg.rename(claimed)
                    raw = claimed.read_bytes()
                except FileNotFoundError:
                    continue  # another process took it
                entries = []
                for line in raw.split(b"\n"):
                    if not line:
                        continue
                    try:
                        orjson.loads(line)
                    except orjson.JSONDecodeError:
                        log.warning("gt8004: skipping a torn spool line in %s", seg.name)
                        continue
                    entries.append(line)
                if not entries:
                    self._unlink_locked(claimed)
                    continue
                batch_id = stem.split("-", 1)[1] if "-" in stem else new_batch_id()
                return Batch(entries, batch_id=batch_id, spool_path=claimed)
            return None

    def release(self, batch: Batch, done: bool) -> None:
        """After a send: delete the segment (``done``) or put it back as ``.seg``."""
        path = batch.spool_path
        if path is None:
            return
        with self._lock:
            if done:
                self._unlink_locked(path)
            else:
                stem = path.name.rsplit(".", 2)[0]
                try:
                    path.rename(self.directory / f"{stem}.seg")
                    self._maybe_sealed = True
                except FileNotFoundError:
                    pass

    def _unlink_locked(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        self._bytes = max(0, self._bytes - size)
