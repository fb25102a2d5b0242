"""Slice files: the deduplication state of a partition, written once per slice of watermark time.

A restart used to rebuild the state by re-reading one window of the log (an hour: minutes of catch-up).
Instead, each finished slice — the key sightings of the records ``[first, end)`` — is written once under
``<dir>/<group>/<topic>-<partition>/<first>-<end>.slice`` and deleted once it is more than a window
(plus two slices) behind the watermark. A new owner loads a chain of slices ending at some offset ``X``
at or before the committed offset and re-reads only ``[X, committed)`` (``recovery``).

A slice is a function of the log alone: every sighting of ``[first, end)`` with its watermark, plus
``floor``, a bound on the watermark of every record before ``first``. So a file is right whoever wrote
it — a crashed owner, a zombie, another process on this host — and trusting one only needs:

* ``end <= committed``: a slice written for records the crashed owner never committed holds sightings of
  records the next owner will process again, which would make each of them a duplicate of itself;
* a chain linked by record digests (``prev`` of a slice is ``last`` of the one before, and the record at
  the newest slice's ``last_offset`` is re-read and compared), so files of a deleted and re-created
  topic, or of another log, never join;
* the checksum (a torn or damaged file), and the group, topic and partition in the header.

Files are written to a temporary name and renamed. They are not fsynced: a file a power loss damaged
fails its checksum and the owner falls back to re-reading the window.

Format (little-endian): ``MLDEDUP1``, header length (u32), JSON header, fingerprint halves (u64 x count,
twice), watermark offsets from ``base`` in ms (u16 x count), blake2b-128 of everything before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from meterline import faults
from stream_workers.errors import StreamWorkerError

__all__ = ["CorruptSlice", "SliceMeta", "SliceStore", "record_digest", "select_chain"]

log = logging.getLogger(__name__)

MAGIC: Final = b"MLDEDUP1"
VERSION: Final = 1
_SUFFIX: Final = ".slice"


class CorruptSlice(StreamWorkerError):
    """A slice file that cannot be read or fails its checksum."""


def record_digest(offset: int, timestamp: int, value: bytes | None) -> str:
    """Identity of one record of the log (links slices to each other and to the log)."""
    h = hashlib.blake2b(f"{offset}:{timestamp}:".encode(), digest_size=12)
    h.update(value or b"")
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class SliceMeta:
    """Header of a slice file: the records ``[first, end)`` and what links it to its neighbours."""

    path: Path
    first: int
    end: int
    floor: int  # every record before ``first`` has a watermark <= floor
    wm_end: int  # the watermark after the slice's last record
    base: int  # watermark the offsets count from
    count: int
    prev: str | None  # digest of the record before ``first`` (None: nothing before is held)
    last: str  # digest of the slice's last record
    last_offset: int
    group: str
    topic: str
    partition: int


class SliceStore:
    """The slice files of one partition of one consumer group."""

    def __init__(self, directory: Path, group: str, topic: str, partition: int) -> None:
        self.directory = directory
        self.group, self.topic, self.partition = group, topic, partition
        self._warned = False

    def write(self, *, first: int, end: int, floor: int, wm_end: int, base: int, prev: str | None, last: str,
              last_offset: int, hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64],
              offsets: npt.NDArray[np.uint16]) -> SliceMeta | None:
        """Write one slice atomically; None (logged once) if the disk refuses: files only save time."""
        header = {"v": VERSION, "group": self.group, "topic": self.topic, "partition": self.partition,
                  "first": first, "end": end, "floor": floor, "wm_end": wm_end, "base": base, "count": len(hi),
                  "prev": prev, "last": last, "last_offset": last_offset}
        head = json.dumps(header, separators=(",", ":")).encode()
        name = f"{first:020d}-{end:020d}{_SUFFIX}"
        tmp = self.directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            digest = hashlib.blake2b(digest_size=16)
            with tmp.open("wb") as out:
                for piece in (MAGIC, struct.pack("<I", len(head)), head, np.ascontiguousarray(hi, "<u8").data,
                              np.ascontiguousarray(lo, "<u8").data, np.ascontiguousarray(offsets, "<u2").data):
                    digest.update(piece)
                    out.write(piece)
                out.write(digest.digest())
            os.replace(tmp, self.directory / name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if not self._warned:
                self._warned = True
                log.warning("%s/%d: cannot write dedupe slice files in %s (%s); a restart will re-read the "
                            "whole window", self.topic, self.partition, self.directory, exc)
            return None
        faults.point("dedupe.after_slice_write", slice=f"{self.topic}/{self.partition}/{first}-{end}")
        return _meta(self.directory / name, header)

    def scan(self) -> list[SliceMeta]:
        """Headers of the readable slice files of this partition; removes leftovers and unreadable files."""
        if not self.directory.is_dir():
            return []
        metas = []
        for path in sorted(self.directory.iterdir()):
            if path.name.endswith(".tmp"):  # a writer died between write and rename (or is writing now)
                path.unlink(missing_ok=True)
                continue
            if not path.name.endswith(_SUFFIX):
                continue
            try:
                meta = _meta(path, _read_header(path))
            except (CorruptSlice, OSError) as exc:
                log.warning("%s: dropping unreadable dedupe slice (%s)", path, exc)
                path.unlink(missing_ok=True)
                continue
            if (meta.group, meta.topic, meta.partition) != (self.group, self.topic, self.partition):
                log.warning("%s: slice file of %s %s/%d ignored", path, meta.group, meta.topic, meta.partition)
                continue
            metas.append(meta)
        return metas

    @staticmethod
    def load(meta: SliceMeta) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        """(hi, lo, watermark) of every sighting of the slice; ``CorruptSlice`` if it fails its checksum."""
        try:
            data = meta.path.read_bytes()
        except OSError as exc:
            raise CorruptSlice(f"{meta.path}: {exc}") from exc
        body, digest = data[:-16], data[-16:]
        if len(data) < 28 or hashlib.blake2b(body, digest_size=16).digest() != digest:
            raise CorruptSlice(f"{meta.path}: checksum mismatch")
        start = 12 + struct.unpack_from("<I", body, 8)[0]
        n = meta.count
        if len(body) != start + 18 * n:
            raise CorruptSlice(f"{meta.path}: {len(body) - start} bytes of arrays for {n} sightings")
        hi = np.frombuffer(body, "<u8", n, start).astype(np.uint64)
        lo = np.frombuffer(body, "<u8", n, start + 8 * n).astype(np.uint64)
        seen = np.frombuffer(body, "<u2", n, start + 16 * n).astype(np.int64) + meta.base
        return hi, lo, seen

    @staticmethod
    def delete(path: Path) -> None:
        path.unlink(missing_ok=True)

    def clear(self) -> None:
        for meta in self.scan():
            meta.path.unlink(missing_ok=True)


def select_chain(metas: list[SliceMeta], committed: int, window_ms: int, watermark: int,
                 trust_uncommitted: bool = False) -> list[SliceMeta]:
    """The linked slices to load for a restart at ``committed``, oldest first ([] if none).

    Ends with the slice that ends last at or before ``committed`` (the longest if several do) and
    reaches back through linked predecessors until the oldest one's floor is more than a window behind
    ``watermark`` (a lower bound of the watermark after the re-read) or nothing links further. Whether the
    chain reaches far enough is checked after the re-read (``WindowDeduper.complete``).
    ``trust_uncommitted`` drops the ``end <= committed`` rule: a negative control for the crash tests.
    """
    usable = [m for m in metas if m.end <= committed or trust_uncommitted]
    if not usable:
        return []
    newest = max(usable, key=lambda m: (m.end, -m.first))
    chain = [newest]
    bound = max(watermark, newest.wm_end)
    while not chain[0].floor + window_ms < bound and chain[0].prev is not None:
        links = [m for m in usable if m.end == chain[0].first and m.last == chain[0].prev]
        if not links:
            break
        chain.insert(0, min(links, key=lambda m: m.first))
    return chain


def _read_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        lead = f.read(12)
        if len(lead) < 12 or lead[:8] != MAGIC:
            raise CorruptSlice(f"{path}: not a slice file")
        head = f.read(struct.unpack_from("<I", lead, 8)[0])
    try:
        header: dict[str, Any] = json.loads(head)
    except ValueError as exc:
        raise CorruptSlice(f"{path}: unreadable header") from exc
    if header.get("v") != VERSION:
        raise CorruptSlice(f"{path}: format version {header.get('v')!r}")
    return header


def _meta(path: Path, h: dict[str, Any]) -> SliceMeta:
    try:
        return SliceMeta(path, int(h["first"]), int(h["end"]), int(h["floor"]), int(h["wm_end"]), int(h["base"]),
                         int(h["count"]), h["prev"], str(h["last"]), int(h["last_offset"]), str(h["group"]),
                         str(h["topic"]), int(h["partition"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptSlice(f"{path}: incomplete header") from exc
