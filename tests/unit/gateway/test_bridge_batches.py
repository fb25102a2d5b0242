"""``ReportBatcher``: a report's PUBACK leaves only after Kafka acknowledged its record, one write a group.

The connection is a fake at the transport boundary (it records the bytes written); Kafka is a fake
``produce`` whose acknowledgement the test gives or withholds.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from gateway.bridge.reports import BRIDGED, Record, ReportBatcher, puback, take_reports


class FakeConnection:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def send_package(self, package: bytes) -> None:
        self.written.append(package)

    def is_closing(self) -> bool:
        return self.closing

    def acked(self) -> list[int]:
        data = b"".join(self.written)
        return [struct.unpack_from("!BBHBB", data, i)[2] for i in range(0, len(data), 6)]


class FakeKafka:
    """``produce`` waits until the test acknowledges (or fails) each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, list[bytes], asyncio.Future[None]]] = []
        self.arrived = asyncio.Event()

    async def produce(self, topic: str, key: bytes, values: list[bytes]) -> None:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.calls.append((topic, key, list(values), ack))
        self.arrived.set()
        await ack


def convert(payload: bytes) -> Record:
    agent, _, rest = payload.partition(b":")
    if agent == b"bad":
        return Record("dead", b"", payload, "schema")
    return Record("usage", agent, payload, BRIDGED, rest.decode())


def batcher(kafka: FakeKafka, live: list[FakeConnection], counts: dict[str, int]) -> ReportBatcher:
    def count(outcome: str, n: int) -> None:
        counts[outcome] = counts.get(outcome, 0) + n
    return ReportBatcher(convert=convert, produce=kafka.produce, current=lambda c: c in live and not c.is_closing(),
                         count=count)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_puback_is_an_mqtt5_success_puback() -> None:
    # PUBACK, remaining length 4: packet id, reason code 0 (success), property length 0
    assert puback(0x1234) == b"\x40\x04\x12\x34\x00\x00"


async def test_pubacks_only_after_kafka_acked_each_group() -> None:
    kafka, conn, counts = FakeKafka(), FakeConnection(), dict[str, int]()
    reports = batcher(kafka, [conn], counts)
    for mid, payload in enumerate([b"a:1", b"b:2", b"a:3", b"bad", b"b:4"], start=1):
        reports.add(conn, mid, payload)  # one socket read's worth: one batch
    await kafka.arrived.wait()
    await settle()
    groups = {(topic, key): (values, ack) for topic, key, values, ack in kafka.calls}
    assert {k: v[0] for k, v in groups.items()} == {("usage", b"a"): [b"a:1", b"a:3"],
                                                     ("usage", b"b"): [b"b:2", b"b:4"], ("dead", b""): [b"bad"]}
    assert conn.written == []  # nothing acknowledged before Kafka's ack
    groups["usage", b"a"][1].set_result(None)
    await settle()
    assert conn.acked() == [1, 3] and len(conn.written) == 1  # the group's PUBACKs in one write
    groups["dead", b""][1].set_result(None)
    groups["usage", b"b"][1].set_result(None)
    await asyncio.wait(reports.tasks)
    assert not reports.tasks
    assert sorted(conn.acked()) == [1, 2, 3, 4, 5]
    assert counts == {BRIDGED: 4, "schema": 1}


async def test_a_group_kafka_refuses_is_never_acknowledged() -> None:
    kafka, conn, counts = FakeKafka(), FakeConnection(), dict[str, int]()
    reports = batcher(kafka, [conn], counts)
    reports.add(conn, 7, b"a:7")
    reports.add(conn, 8, b"b:8")
    await kafka.arrived.wait()
    await settle()
    for _, key, _, ack in kafka.calls:
        if key == b"a":
            ack.set_exception(RuntimeError("Kafka down"))
        else:
            ack.cancel()  # the bridge stopping while its retry waits
    await asyncio.wait(reports.tasks)
    assert conn.written == [] and counts == {}


@pytest.mark.parametrize("what", ["reconnected", "closing"])
async def test_no_puback_on_a_connection_that_is_no_longer_live(what: str) -> None:
    """Reports taken on a connection that closed are in Kafka but not acknowledged on the new one: the
    broker redelivers them (the workers drop the copy). The live connection's reports are acknowledged."""
    kafka, old, new, counts = FakeKafka(), FakeConnection(), FakeConnection(), dict[str, int]()
    live = [old]
    reports = batcher(kafka, live, counts)
    reports.add(old, 1, b"a:1")
    await kafka.arrived.wait()
    if what == "reconnected":
        live[:] = [new]
    else:
        old.closing = True
    kafka.calls[0][3].set_result(None)
    await asyncio.wait(reports.tasks)
    assert old.written == [] and new.written == []
    assert counts == {BRIDGED: 1}  # it did reach Kafka


async def test_reports_of_a_key_gather_while_its_send_waits_on_kafka() -> None:
    """One send per key in flight: later reads' reports of that key go out together after its ack,
    while another key's reports are sent at once."""
    kafka, conn, counts = FakeKafka(), FakeConnection(), dict[str, int]()
    reports = batcher(kafka, [conn], counts)
    reports.add(conn, 1, b"a:1")
    await kafka.arrived.wait()
    for mid, payload in [(2, b"a:2"), (3, b"b:3")]:
        reports.add(conn, mid, payload)
        await settle()  # separate socket reads
    reports.add(conn, 4, b"a:4")
    await settle()
    assert [values for _, _, values, _ in kafka.calls] == [[b"a:1"], [b"b:3"]]
    kafka.calls[1][3].set_result(None)
    await settle()
    assert conn.acked() == [3]
    kafka.calls[0][3].set_result(None)
    await settle()
    assert [values for _, _, values, _ in kafka.calls][2:] == [[b"a:2", b"a:4"]]
    assert conn.acked() == [3, 1]
    kafka.calls[2][3].set_result(None)
    await asyncio.wait(reports.tasks)
    assert conn.acked() == [3, 1, 2, 4] and not reports.tasks


class FakeHandler:
    """gmqtt's packet handler as far as ``take_reports`` uses it."""

    def __init__(self) -> None:
        self.current_connection = FakeConnection()
        self.passed_on: list[tuple[int, bytes]] = []

    def _handle_publish_packet(self, cmd: int, raw: bytes) -> None:
        self.passed_on.append((cmd, raw))


class FakeClient:
    def __init__(self) -> None:
        self._package_handler = FakeHandler()


def publish(topic: bytes, mid: int, properties: bytes, payload: bytes) -> bytes:
    """The variable header and payload of an MQTT 5 PUBLISH (what gmqtt hands its handler)."""
    length, varint = len(properties), b""
    while True:
        byte, length = length & 0x7F, length >> 7
        varint += bytes([byte | (0x80 if length else 0)])
        if not length:
            break
    return struct.pack("!H", len(topic)) + topic + struct.pack("!H", mid) + varint + properties + payload


async def test_take_reports_parses_qos1_reports_and_passes_on_the_rest() -> None:
    taken: list[tuple[object, int, bytes]] = []

    class Collect(ReportBatcher):
        def add(self, connection: object, mid: int, payload: bytes) -> None:
            taken.append((connection, mid, payload))

    client = FakeClient()
    handler = client._package_handler
    take_reports(client, "billing/report", Collect(convert=convert, produce=FakeKafka().produce,
                                                   current=lambda c: True, count=lambda o, n: None))
    # a user property of 206 bytes: its property length takes two bytes
    user_property = b"\x26" + struct.pack("!H", 1) + b"k" + struct.pack("!H", 200) + b"v" * 200
    packets = [(0x32, publish(b"billing/report", 0x0102, b"", b'{"a":1}')),
               (0x3A, publish(b"billing/report", 7, user_property, b"payload")),  # DUP, QoS 1
               (0x32, publish(b"billing/heartbeat", 8, b"", b"{}")),
               (0x30, b"\x00\x0ebilling/report\x00{}"),  # QoS 0: no packet id
               (0x32, publish(b"billing/reports", 9, b"", b"x"))]
    for cmd, raw in packets:
        handler._handle_publish_packet(cmd, raw)
    assert taken == [(handler.current_connection, 0x0102, b'{"a":1}'), (handler.current_connection, 7, b"payload")]
    assert handler.passed_on == packets[2:]


def test_take_reports_refuses_a_gmqtt_without_its_hook() -> None:
    client = FakeClient()
    del client._package_handler.current_connection
    with pytest.raises(RuntimeError, match="cannot acknowledge reports after Kafka's ack"):
        take_reports(client, "billing/report", batcher(FakeKafka(), [], {}))


async def test_closing_takes_no_more_reports_and_hands_over_the_taken_ones() -> None:
    kafka, conn, counts = FakeKafka(), FakeConnection(), dict[str, int]()
    reports = batcher(kafka, [conn], counts)
    reports.add(conn, 1, b"a:1")
    reports.close()  # before the loop ran the hand-over: close does it
    assert len(reports.tasks) == 1
    reports.add(conn, 2, b"a:2")  # after close: not taken, so never acknowledged (the broker redelivers)
    await kafka.arrived.wait()
    kafka.calls[0][3].set_result(None)
    await asyncio.wait(reports.tasks)
    await settle()
    assert [values for _, _, values, _ in kafka.calls] == [[b"a:1"]] and conn.acked() == [1]
