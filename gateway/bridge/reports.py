"""Billing reports a group at a time: one Kafka send per agent, PUBACKs after Kafka acknowledged them.

A task per report (gmqtt's way with manual acknowledgements) spent most of the bridge's time in
asyncio bookkeeping: task creation, a timeout, ``asyncio.wait`` and a PUBACK write per report; and
aiokafka's per-record ``send`` (partitioner, a future a record) took a third of what was left (py-spy,
``docs/capacity.md``). Here a report is appended to a list as gmqtt parses it; the list is handed over
once the bytes of one socket read are parsed (``call_soon``, no added wait), validated and turned into
records grouped by (Kafka topic, key) — the key is the agent. Each group goes to Kafka in one
``EventProducer.send(as_batch=True)``, and its PUBACKs leave in one write once Kafka acknowledged it.
One send per key is in flight at a time: reports of that key arriving meanwhile gather into its next
send (aiokafka keeps one request in flight per broker anyway), so groups grow with Kafka's latency
instead of queueing behind it; different keys are sent concurrently, and the receive maximum the
bridge announces bounds what waits. A group Kafka does not take is retried and never acknowledged;
reports of a connection that has since closed are not acknowledged on the new one (the broker
redelivers them and the workers drop the copy by report id).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    """Collects ``(connection, packet id, payload)`` of reports and bridges them a group at a time.

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
        self._open: dict[tuple[str, bytes], _Group] = {}  # collecting while the key's send is in flight
        self._senders: dict[tuple[str, bytes], asyncio.Task[None]] = {}
        self.closed = False  # stopping: reports are no longer taken (unacknowledged, the broker redelivers)

    @property
    def tasks(self) -> set[asyncio.Task[None]]:
        """The sends in progress (one per Kafka topic and key)."""
        return set(self._senders.values())

    def add(self, connection: Connection, mid: int, payload: bytes) -> None:
        if self.closed:
            return
        self._pending.append((connection, mid, payload))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def close(self) -> None:
        """Take no more reports and hand over those taken, so that ``tasks`` covers all of them."""
        self.closed = True
        self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        convert, groups = self._convert, self._open
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
        loop = asyncio.get_running_loop()
        for group_key in groups.keys() - self._senders.keys():
            self._senders[group_key] = loop.create_task(self._sender(group_key))

    async def _sender(self, group_key: tuple[str, bytes]) -> None:
        """Send the key's open group, then whatever gathered meanwhile, until nothing is left."""
        try:
            while (group := self._open.pop(group_key, None)) is not None:
                await self._send(*group_key, group)
        except Exception:
            log.exception("MQTT bridge: sending reports to Kafka failed; they stay unacknowledged (the broker "
                          "redelivers them after a reconnect)")
        finally:
            del self._senders[group_key]

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


def take_reports(client: Any, topic: str, batcher: ReportBatcher) -> None:
    """Hand QoS 1 publishes on ``topic`` from gmqtt's packet handler to ``batcher``, as they are parsed.

    gmqtt's own path (``_handle_publish_packet``: the properties into a dict, the topic decoded, a
    task per message and a PUBACK per handler) is replaced for them by a lean parse of the MQTT 5
    PUBLISH: topic, packet id, properties skipped by their length, payload. Any other publish
    (other topics, QoS 0, a topic alias) goes on to gmqtt's path. Raises when the gmqtt in use lacks
    the two attributes this relies on, rather than acknowledging reports some other way.
    """
    handler = client._package_handler
    own = getattr(handler, "_handle_publish_packet", None)
    if own is None or not hasattr(handler, "current_connection"):
        raise RuntimeError("this gmqtt has no _handle_publish_packet/current_connection: the MQTT bridge cannot "
                           "acknowledge reports after Kafka's ack with it")
    wanted = topic.encode()
    size = len(wanted)
    after_topic = 2 + size

    def publish(cmd: int, raw: bytes) -> None:
        if cmd & 0x06 == 0x02 and raw[0] << 8 | raw[1] == size and raw[2:after_topic] == wanted:  # QoS 1, topic
            mid = raw[after_topic] << 8 | raw[after_topic + 1]
            pos, length, shift = after_topic + 2, 0, 0
            while True:  # property length: a variable byte integer
                byte = raw[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            batcher.add(handler.current_connection, mid, raw[pos + length:])
        else:
            own(cmd, raw)

    handler._handle_publish_packet = publish


__all__ = ["BRIDGED", "Connection", "Record", "ReportBatcher", "puback", "take_reports"]
