"""Insert deduplication of the embedded engine, made safe against a kill in the middle of a commit.

The worker's exactly-once rests on ClickHouse's insert deduplication: a batch re-sent after a crash
carries its token again, and a table that already holds that block skips it. On a non-replicated
MergeTree the engine remembers block ids in a per-table file (``deduplication_logs/``) and, when it
commits a part, writes the block id there *before* it renames the part into place. A process killed
between the two (SIGKILL, the out-of-memory killer) leaves an id whose part never appeared; the
worker's correct retry of that batch is then skipped as a duplicate, and the table loses the batch
(seen with ``strace`` fault injection: killed at the raw table's rename, ``request_logs`` ended 1,000
rows short while the rollups held them; ``tests/integration/meterline/test_chdb_dedup_repair.py``).

``repair_deduplication_logs`` runs before a process opens an engine directory that nobody holds: for
every block id whose part is neither on disk nor inside a part on disk (merges keep the block range
in the name), it appends the engine's own DROP record, as ``DROP PARTITION`` does, so that the retry
is stored. Ids of parts that exist are left alone, so a batch that did land is still skipped.
A ClickHouse server with ``Replicated*`` tables (``docs/cluster.md``) commits the part and its block
id together in Keeper and needs none of this.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["repair_deduplication_logs"]

log = logging.getLogger(__name__)

#: ``<partition>_<min block>_<max block>_<level>[_<mutation>]``; the partition id has no ``_``.
_PART = re.compile(r"^([^_]+)_(\d+)_(\d+)_(\d+)(?:_\d+)?$")
_ADD, _DROP = "1", "2"


@contextlib.contextmanager
def _unowned(data_dir: Path) -> Iterator[bool]:
    """Yield whether no engine holds ``data_dir`` (the engine flocks its ``status`` file while open)."""
    status = data_dir / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:  # removed at a clean stop; never made yet
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # an engine runs on it (this process's, or another's)
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _covered(part: str, parts_on_disk: dict[str, list[tuple[int, int]]]) -> bool:
    match = _PART.match(part)
    if match is None:
        return True  # a name we do not understand: keep its ids (the engine's default)
    partition, low, high = match.group(1), int(match.group(2)), int(match.group(3))
    return any(lo <= low and high <= hi for lo, hi in parts_on_disk.get(partition, ()))


def _parts_on_disk(table_dir: Path) -> dict[str, list[tuple[int, int]]]:
    ranges: dict[str, list[tuple[int, int]]] = {}
    for entry in table_dir.iterdir():
        if not entry.is_dir() or entry.name.startswith(("tmp", "delete_tmp", "detached")):
            continue
        match = _PART.match(entry.name)
        if match is not None:
            ranges.setdefault(match.group(1), []).append((int(match.group(2)), int(match.group(3))))
    return ranges


def _log_index(path: Path) -> int:
    digits = path.stem.rsplit("_", 1)[-1]
    return int(digits) if digits.isdigit() else -1


def _repair_table(logs_dir: Path) -> int:
    files = sorted(logs_dir.glob("deduplication_log_*.txt"), key=_log_index)
    if not files:
        return 0
    recorded: dict[str, str] = {}  # block id -> part, after replaying ADD and DROP records in order
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            fields = line.split("\t")
            if len(fields) != 3:
                continue  # a torn last line: the engine ignores it too
            op, part, block = fields
            if op == _ADD:
                recorded[block] = part
            elif op == _DROP:
                recorded.pop(block, None)
    on_disk = _parts_on_disk(logs_dir.parent)
    phantoms = [(part, block) for block, part in recorded.items() if not _covered(part, on_disk)]
    if phantoms:
        with files[-1].open("a") as out:
            out.writelines(f"{_DROP}\t{part}\t{block}\n" for part, block in phantoms)
            out.flush()
            os.fsync(out.fileno())
    return len(phantoms)


def repair_deduplication_logs(data_dir: Path) -> int:
    """Drop block ids whose part never appeared (a commit killed midway); return how many.

    Does nothing while an engine holds ``data_dir``: the files are the engine's while it runs.
    """
    store = data_dir / "store"
    if not store.is_dir():
        return 0
    repaired = 0
    with _unowned(data_dir) as free:
        if not free:
            return 0
        for logs_dir in store.glob("*/*/deduplication_logs"):
            count = _repair_table(logs_dir)
            if count:
                log.warning("deduplication log of %s: dropped %d block id(s) whose part was never committed "
                            "(a process killed mid-insert); re-sent batches for them will be stored",
                            logs_dir.parent.name, count)
            repaired += count
    return repaired
