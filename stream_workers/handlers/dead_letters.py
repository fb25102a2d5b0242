"""Mirror the dead-letter topic into ClickHouse ``dead_letters`` (every stage: gateway, bridge, worker).

Dead letters go through the same offset-range batches and tokens as events, so each is stored once.
A worker replay may publish a dead letter again (at-least-once); the key below ignores the publish
time of dead letters that name their source offset, so such repeats are deduplicated like events.
A record on this topic that is not a ``DeadLetter`` is stored as reason ``invalid_dead_letter``
(never sent back to the topic). Mind the table TTL (90 days on ``failed_at``): older letters are
dropped at insert.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import msgspec

from schemas.events import DeadLetter, dead_letter_decoder
from stream_workers.batch import DEAD_LETTER_COLUMNS
from stream_workers.records import PAYLOAD_LIMIT, Parsed

__all__ = ["DeadLetterHandler", "dead_letter_row"]


def dead_letter_row(d: DeadLetter) -> list[Any]:
    return [d.failed_at / 1000, d.stage, d.reason, d.error, d.source_topic, d.partition or 0, d.offset or 0,
            d.agent_id or "", d.payload]


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=10).hexdigest()


class DeadLetterHandler:
    kind = "dead_letter"
    table = "dead_letters"
    columns = DEAD_LETTER_COLUMNS

    def parse(self, value: bytes | None, topic: str, partition: int, offset: int, rows: bool = True) -> Parsed:
        out = Parsed()
        try:
            d = dead_letter_decoder.decode(value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            text = (value or b"")[:PAYLOAD_LIMIT].decode("utf-8", "replace")
            d = DeadLetter(reason="invalid_dead_letter", error=str(exc)[:1024], stage="worker", source_topic=topic,
                           payload=text, failed_at=int(time.time() * 1000), partition=partition,
                           offset=offset)
            out.items.append((f"raw\x1f{topic}\x1f{partition}\x1f{offset}", dead_letter_row(d) if rows else []))
            return out
        when = "" if d.offset is not None else str(d.failed_at)
        key = "\x1f".join((d.stage, d.source_topic, str(d.partition), str(d.offset), d.reason, when,
                           _digest(d.payload), _digest(d.error)))
        out.items.append((key, dead_letter_row(d) if rows else []))
        return out
