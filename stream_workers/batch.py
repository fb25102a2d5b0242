"""Sink batches: the deduplicated rows of one offset range of one source partition.

A batch covers the records ``[start, end)`` of a partition and is written under the token
``"<topic>/<partition>/<start>-<end>"``. Because deduplication is a function of the log and the range
is recorded before writing (see ``processor``), a replay re-forms the same batch under the same token,
and ClickHouse's insert deduplication makes the second write a no-op, rollups included.
"""

from __future__ import annotations

import time
from typing import Any, Final

import msgspec

from schemas.events import DeadLetter

__all__ = ["DEAD_LETTER_COLUMNS", "OpenBatch", "SinkBatch", "TableBlock", "decode_batch", "encode_batch"]

DEAD_LETTER_COLUMNS: Final = ["failed_at", "stage", "reason", "error", "source_topic", "partition", "offset",
                              "agent_id", "payload"]
_json = msgspec.json.Encoder()


class TableBlock(msgspec.Struct, array_like=True):
    """Rows for one table as ``JSONCompactEachRow`` bytes."""

    table: str
    columns: list[str]
    data: bytes
    rows: int


class SinkBatch(msgspec.Struct, array_like=True):
    token: str
    blocks: list[TableBlock]
    record_ts: list[int]  # Kafka timestamps (ms) of the source records, for the freshness metric

    @property
    def rows(self) -> int:
        return sum(b.rows for b in self.blocks)


_msgpack_enc = msgspec.msgpack.Encoder()
_msgpack_dec = msgspec.msgpack.Decoder(SinkBatch)


def encode_batch(batch: SinkBatch) -> bytes:
    return _msgpack_enc.encode(batch)


def decode_batch(data: bytes) -> SinkBatch:
    return _msgpack_dec.decode(data)


def _rows_block(rows: list[list[Any]]) -> bytes:
    return _json.encode_lines(rows)  # one row per line, in one call (half the per-row cost of a join)


class OpenBatch:
    """Records of one partition collected since the last write."""

    __slots__ = ("start", "end", "rows", "dead", "nbytes", "opened", "record_ts", "recorded")

    def __init__(self, start: int) -> None:
        self.start = start
        self.end = start
        self.rows: list[list[Any]] = []
        self.dead: list[DeadLetter] = []
        self.nbytes = 0
        self.opened = time.monotonic()
        self.record_ts: list[int] = []
        self.recorded = False  # its range is committed as pending (to be re-formed after a crash)

    def seal(self, topic: str, partition: int, table: str, columns: list[str]) -> SinkBatch:
        """The batch's rows for ``table``; its dead letters travel via the dead-letter topic."""
        blocks = []
        if self.rows:
            blocks.append(TableBlock(table, columns, _rows_block(self.rows), len(self.rows)))
        return SinkBatch(f"{topic}/{partition}/{self.start}-{self.end}", blocks, self.record_ts)
