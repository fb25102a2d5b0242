"""Billing reports a batch at a time: one Kafka send per agent, PUBACKs after Kafka acknowledged them.

A task per report (gmqtt's way with manual acknowledgements) spent most of the bridge's time in
asyncio bookkeeping: task creation, a timeout, ``asyncio.wait`` and a PUBACK write per report
(py-spy, ``docs/capacity.md``). Here a report is appended to a list as gmqtt parses it; the list is
handed over once the bytes of one socket read are parsed (``call_soon``), so a batch is what the broker
sent since the last look, with no added wait. A batch is validated, turned into records and sent in one
``EventProducer.send`` per (Kafka topic, key) — per agent, since the key is the agent — and each
group's PUBACKs go out in one write once Kafka acknowledged that group. A group that Kafka does not
take is retried and never acknowledged; reports of a connection that has since closed are not
acknowledged on the new one (the broker redelivers them and the workers drop the copy by report id).
Batches overlap: a new one starts while earlier ones wait on Kafka, bounded by the receive maximum
the bridge announces to the broker.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from meterline import faults

log = logging.getLogger(__name__)

BRIDGED = "bridged"  # the outcome of a report that became a usage record
_PUBACK = struct.Struct("!BBHBB")  # PUBACK, remaining length 4, packet id, reason 0, no properties


def puback(mid: int) -> bytes:
    """An MQTT 5 PUBACK with reason code 0 ("success") for packet id ``mid``."""
    return _PUBACK.pack(0x40, 4, mid, 0, 0)


class Connection(Protocol):
    """What the batcher needs of gmqtt's ``MQTTConnection``: write bytes, and whether it is closing."""

    def send_package(self, package: bytes) -> None: ...

    def is_closing(self) -> bool: ...


@dataclass(slots=True)
class Record:
    """What one report became: a record for ``topic`` (usage or dead letters), counted as ``outcome``."""

    topic: str
    key: bytes
    value: bytes
    outcome: str  # "bridged" for a usage record, else the dead letter's reason
    report_id: str | None = None  # as reported (None: a legacy report), for the fault point


@dataclass(slots=True)
class _Group:
    values: list[bytes] = field(default_factory=list)
    acks: list[tuple[Connection, int]] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    report_ids: list[str | None] = field(default_factory=list)  # of the usage records


class ReportBatcher:
    """Collects ``(connection, packet id, payload)`` of reports and bridges them a batch at a time.

    ``convert`` turns a payload into its ``Record`` (never raises); ``produce`` returns once Kafka
    acknowledged every value (retrying inside; cancelled → nothing acknowledged); ``current`` says
    whether a connection is still the client's live one; ``count`` adds to the messages metric.
    """

    def __init__(self, *, convert: Callable[[bytes], Record],
                 produce: Callable[[str, bytes, list[bytes]], Awaitable[None]],
                 current: Callable[[Connection], bool], count: Callable[[str, int], None]) -> None:
        self._convert, self._produce, self._current, self._count = convert, produce, current, count
        self._pending: list[tuple[Connection, int, bytes]] = []
        self._scheduled = False
        self.tasks: set[asyncio.Task[None]] = set()

    def add(self, connection: Connection, mid: int, payload: bytes) -> None:
        self._pending.append((connection, mid, payload))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def flush(self) -> None:
        """Start bridging what was collected (at shutdown: so that ``tasks`` holds every report taken)."""
        self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._bridge(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _bridge(self, batch: list[tuple[Connection, int, bytes]]) -> None:
        groups: dict[tuple[str, bytes], _Group] = {}
        convert = self._convert
        for connection, mid, payload in batch:
            record = convert(payload)
            group = groups.get((record.topic, record.key))
            if group is None:
                group = groups[record.topic, record.key] = _Group()
            group.values.append(record.value)
            group.acks.append((connection, mid))
            group.outcomes[record.outcome] = group.outcomes.get(record.outcome, 0) + 1
            if record.outcome == BRIDGED:
                group.report_ids.append(record.report_id)
        results = await asyncio.gather(*(self._send(topic, key, group) for (topic, key), group in groups.items()),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("MQTT bridge: a batch of reports failed; left unacknowledged for redelivery: %r", result)

    async def _send(self, topic: str, key: bytes, group: _Group) -> None:
        await self._produce(topic, key, group.values)
        for report_id in group.report_ids:
            faults.point("bridge.after_produce", report_id=report_id)  # Kafka has it; no PUBACK yet
        for outcome, n in group.outcomes.items():
            self._count(outcome, n)
        self._acknowledge(group.acks)

    def _acknowledge(self, acks: list[tuple[Connection, int]]) -> None:
        """PUBACKs in one write per connection; none on a connection that is no longer the live one."""
        by_connection: dict[int, tuple[Connection, list[bytes]]] = {}
        for connection, mid in acks:
            entry = by_connection.get(id(connection))
            if entry is None:
                entry = by_connection[id(connection)] = (connection, [])
            entry[1].append(puback(mid))
        for connection, packets in by_connection.values():
            if self._current(connection):
                connection.send_package(b"".join(packets))
            else:
                log.info("MQTT bridge: %d report(s) in Kafka but their connection closed before the PUBACK; "
                         "the broker redelivers them and the workers drop the copies", len(packets))


__all__ = ["BRIDGED", "Connection", "Record", "ReportBatcher", "puback"]
