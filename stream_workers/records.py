"""What a handler makes of one Kafka record: deduplication keys with rows, and dead letters.

``parse_record`` is how the processor (and the rebuild of a deduplication window, ``recovery``) runs a
handler: a record that makes the handler fail becomes a dead letter, the same way every time, so one bad
record neither stops its partition nor makes a new owner decide differently from the old one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from aiokafka.structs import TopicPartition

from schemas.events import DeadLetter

__all__ = ["PAYLOAD_LIMIT", "Handler", "Parsed", "dead_letter", "parse_record"]

log = logging.getLogger(__name__)

PAYLOAD_LIMIT: Final = 64 * 1024


@dataclass(slots=True)
class Parsed:
    """Valid items as (dedupe key, row) in log order, plus dead letters for the invalid parts."""

    items: list[tuple[str, list[Any]]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    clamped: list[str] = field(default_factory=list)


class Handler(Protocol):
    """Turns records of one source topic into rows of one table (requests, usage)."""

    kind: str
    table: str
    columns: list[str]

    def parse(self, value: bytes | None, topic: str, partition: int, offset: int, rows: bool = True) -> Parsed:
        """Validate one record; ``rows=False`` (rebuilding dedupe state) skips building rows."""
        ...


def dead_letter(reason: str, error: str, payload: bytes | str | None, topic: str, partition: int,
                offset: int, agent_id: str | None = None) -> DeadLetter:
    """A ``DeadLetter`` with the original payload (UTF-8 with replacement, at most 64 KiB)."""
    if payload is None:
        text = ""
    elif isinstance(payload, bytes):
        text = payload[:PAYLOAD_LIMIT].decode("utf-8", "replace")
    else:
        text = payload[:PAYLOAD_LIMIT]
    return DeadLetter(reason=reason, error=error[:1024], stage="worker", source_topic=topic, payload=text,
                      failed_at=int(time.time() * 1000), partition=partition, offset=offset,
                      agent_id=agent_id)


def parse_record(handler: Handler, rec: Any, tp: TopicPartition, rows: bool) -> Parsed:
    """``handler.parse``; a record that makes the handler fail becomes a dead letter (deterministically)."""
    try:
        return handler.parse(rec.value, tp.topic, tp.partition, rec.offset, rows=rows)
    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the partition
        if rows:
            log.exception("handler failed on %s/%d offset %d", tp.topic, tp.partition, rec.offset)
        return Parsed(dead=[dead_letter("processing_error", repr(exc), rec.value, tp.topic, tp.partition,
                                        rec.offset)])
