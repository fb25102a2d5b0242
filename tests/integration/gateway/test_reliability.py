"""Faults with real processes: Kafka stopped or SIGKILLed mid-load, the bridge SIGKILLed mid-stream and
exactly between Kafka's ack and its PUBACK."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import msgspec
import pytest

from gateway.keys.admin import create_key
from meterline import faults
from meterline.kafka_admin import create_topics
from meterline.local.kafka import LocalKafka
from meterline.local.mosquitto import MqttEndpoint
from meterline.local.ports import free_port
from schemas.topics import Topics
from tests.integration.gateway.conftest import entry, read_topic
from tests.integration.stream_workers.procs import fired
from tests.mqtt import tenant_client
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("outage", "answer"), [("stopped", "after-ack"), ("killed", "after-ack"),
                                               ("killed", "before-ack")])
async def test_kafka_down_mid_load_loses_nothing_accepted(kafka_process: LocalKafka, mosquitto: MqttEndpoint,
                                                          tmp_dir: Path, outage: str, answer: str) -> None:
    """HTTP clients retrying 503s, and MQTT reports published during the outage (bridge in the gateway).

    The broker goes down (SIGTERM, or SIGKILL: no controlled shutdown, log recovery on restart) once the
    gateway has acknowledged a first load, while clients keep sending; the gateway process itself is
    restarted before Kafka comes back (a deploy during an outage), so nothing it answered 202 may live
    only in its memory. ``before-ack`` is the negative control: a gateway that answers 202 once records
    are queued (``producer.accept_before_ack``) loses what it held when it stopped."""
    protected = answer == "after-ack"
    topics = Topics(prefix=f"r{uuid.uuid4().hex[:8]}.", partitions=3)
    boot = kafka_process.bootstrap_servers
    await create_topics(boot, topics)
    key, _ = await create_key(boot, topics.keys, "agent-k")
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": boot, "METERLINE_TOPIC_PREFIX": topics.prefix,
           "METERLINE_PARTITIONS": str(topics.partitions), "METERLINE_GATEWAY_PORT": str(port),
           "METERLINE_GATEWAY_PRODUCE_TIMEOUT": "1.5", "METERLINE_GATEWAY_RETRY_AFTER": "1",
           "METERLINE_GATEWAY_DRAIN_TIMEOUT": "1", "METERLINE_GATEWAY_CREATE_TOPICS": "false",
           "METERLINE_GATEWAY_BRIDGE": "true",
           "MQTT_URL": f"mqtt://{mosquitto.username}:{mosquitto.password}@{mosquitto.host}:{mosquitto.port}",
           "METERLINE_BRIDGE_CLIENT_ID": f"outage-{uuid.uuid4().hex[:8]}",
           "METERLINE_BRIDGE_SHARE_GROUP": f"g{uuid.uuid4().hex[:8]}", "PYTHONUNBUFFERED": "1"}
    if not protected:
        env["METERLINE_FAULTS"] = "producer.accept_before_ack=on"
    accepted: set[str] = set()
    refused_4xx: set[str] = set()
    unavailable: set[str] = set()
    statuses: list[int] = []
    stop_sending = asyncio.Event()
    gateway_up = asyncio.Event()
    inflight = [0]
    give_up = time.monotonic() + 60
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
                             timeout=30)

    async def start_gateway(log: Path) -> subprocess.Popen[bytes]:
        proc = _gateway_process(env, log)
        async def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                resp = await http.get("/readyz")
                return resp.status_code == 200 and resp.json().get("mqtt") is True
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            return False
        deadline = time.monotonic() + 30
        while not await ready():
            assert time.monotonic() < deadline, "the gateway did not become ready"
            await asyncio.sleep(0.1)
        return proc

    async def post(body: dict[str, object]) -> httpx.Response:
        await gateway_up.wait()
        inflight[0] += 1  # no await between the wait and this line: a stopping gateway sees it
        try:
            return await http.post("/v1/ingest", json=body)
        finally:
            inflight[0] -= 1

    async def client(n: int) -> None:
        batch_no = 0
        while not stop_sending.is_set():
            ids = [f"c{n}-b{batch_no}-e{i}" for i in range(10)]
            body = {"entries": [entry(i) | {"request_id": i} for i in ids[:9]]
                    + [entry(0) | {"request_id": ids[9], "status_code": "bad"}]}
            while True:  # the SDK's behaviour: resend the same batch after Retry-After
                resp = await post(body)
                statuses.append(resp.status_code)
                if resp.status_code == 202:
                    assert [r["index"] for r in resp.json()["rejected"]] == [9]
                    accepted.update(ids[:9])
                    refused_4xx.add(ids[9])
                    break
                assert resp.status_code == 503, resp.text
                assert resp.headers["retry-after"] == "1"
                assert time.monotonic() < give_up, "the gateway did not recover after Kafka came back"
                unavailable.update(ids[:9])
                await asyncio.sleep(0.2)  # the client's retry delay (shorter than Retry-After), not a wait
            batch_no += 1
            await asyncio.sleep(0.01)  # paces the load

    first = await start_gateway(tmp_dir / "gateway-1.log")
    second: subprocess.Popen[bytes] | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        gateway_up.set()
        publisher = await tenant_client(mosquitto)
        await publisher.connect(mosquitto.host, mosquitto.port)
        tasks = [asyncio.create_task(client(n)) for n in range(4)]
        await eventually(lambda: statuses.count(202) >= 40, 20)  # under load, with acks behind us
        await asyncio.to_thread(kafka_process.stop if outage == "stopped" else kafka_process.kill)
        for i in range(50):  # billing reports while Kafka is down: held unacknowledged by the bridge
            publisher.publish("billing/report", msgspec.json.encode(
                {"api_key": key, "module": "llm", "model": "m", "usage": 1, "report_id": f"outage-{i}"}), qos=1)
        down_at = len(statuses)
        if protected:
            await eventually(lambda: statuses[down_at:].count(503) >= 4, 20)  # every client is refused now
        else:  # the control answers 202 while nothing reaches Kafka
            await eventually(lambda: statuses[down_at:].count(202) >= 20, 20)
        assert (await http.get("/readyz")).status_code == 503
        gateway_up.clear()
        await eventually(lambda: inflight[0] == 0, 20)
        first.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean exit
        assert await asyncio.to_thread(first.wait, 30) in (0, -signal.SIGTERM)
        await asyncio.to_thread(kafka_process.start)
        second = await start_gateway(tmp_dir / "gateway-2.log")
        gateway_up.set()
        await eventually(lambda: statuses[-20:].count(202) == 20 and len(statuses) > down_at + 40, 30)
        stop_sending.set()
        await asyncio.gather(*tasks)
        if protected:
            usage = await read_topic(boot, topics.usage, min_count=50, timeout=30)
        await publisher.disconnect()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.aclose()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    msgs = await read_topic(boot, topics.requests, min_count=1, timeout=20, settle=1.0)
    stored = [e["request_id"] for m in msgs for e in json.loads(m.value)["entries"]]
    if not protected:
        lost = accepted - set(stored)
        assert lost, "a gateway answering before Kafka's ack lost nothing: the scenario did not hit the window"
        return
    assert {json.loads(m.value)["report_id"] for m in usage} == {f"outage-{i}" for i in range(50)}
    assert 503 in statuses and statuses.count(202) > 20
    assert accepted <= set(stored), f"{len(accepted - set(stored))} accepted entries missing"
    assert not refused_4xx & set(stored)
    # a 503 means "not confirmed": such a batch may have been written, and was resent until accepted
    assert set(stored) == accepted
    duplicates = {i for i, n in Counter(stored).items() if n > 1}
    assert duplicates <= unavailable  # only a batch answered 503 may have been written twice


def _gateway_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "meterline_cli", "gateway"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    finally:
        out.close()


def _bridge_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "gateway.bridge"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    finally:
        out.close()


async def test_bridge_sigkilled_mid_stream_loses_no_report(kafka_bootstrap: str, topics: Topics,
                                                           mosquitto: MqttEndpoint, tmp_dir: Path) -> None:
    raw_key, _ = await create_key(kafka_bootstrap, topics.keys, "app-kill")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "METERLINE_TOPIC_PREFIX": topics.prefix,
           "MQTT_URL": f"mqtt://{mosquitto.username}:{mosquitto.password}@{mosquitto.host}:{mosquitto.port}",
           "METERLINE_BRIDGE_CLIENT_ID": f"kill-{uuid.uuid4().hex[:8]}",
           "METERLINE_BRIDGE_SHARE_GROUP": f"g{uuid.uuid4().hex[:8]}",
           "METERLINE_GATEWAY_CREATE_TOPICS": "false", "PYTHONUNBUFFERED": "1"}
    log = tmp_dir / "bridge.log"
    publisher = await tenant_client(mosquitto, clean_session=False, session_expiry_interval=3600)
    await publisher.connect(mosquitto.host, mosquitto.port)

    def report(i: int, prefix: str = "rep") -> bytes:
        return msgspec.json.encode({"api_key": raw_key, "module": "llm", "model": "m", "usage": abs(i),
                                    "timestamp": 1_700_000_000_000 + i, "report_id": f"{prefix}-{i}"})

    bridge = _bridge_process(env, log)
    try:
        # wait until the bridge is subscribed and bridging
        deadline = time.monotonic() + 30
        probes = 0
        while not await read_topic(kafka_bootstrap, topics.usage, min_count=1, timeout=2, settle=0.1):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            publisher.publish("billing/report", report(probes, "probe"), qos=1)
            probes += 1
        total = 1500
        for i in range(total):
            publisher.publish("billing/report", report(i), qos=1)
            if i == total // 3:
                # The kill moment, on purpose not a condition: a third of the stream published and a
                # moment for the bridge to take some of it in hand (the exact window between Kafka's ack
                # and the PUBACK is test_bridge_killed_after_the_kafka_ack_before_the_puback).
                await asyncio.sleep(0.05)
                bridge.send_signal(signal.SIGKILL)
                bridge.wait()
            # the broker allows ~100 unacknowledged publishes per client: pace on our QoS 1 window
            while len(publisher._persistent_storage.get_all()) >= 50:
                await asyncio.sleep(0.005)
        # Once the broker acknowledged every report, those the dead bridge did not take wait in its
        # persistent session (gmqtt keeps each QoS 1 publish until its PUBACK).
        await asyncio.wait_for(publisher._persistent_storage.wait_empty(), 30)
        before_restart = await read_topic(kafka_bootstrap, topics.usage, min_count=total + probes, timeout=2)
        assert len(before_restart) < total, "the kill came too late to test anything"
        bridge = _bridge_process(env, log)
        msgs = await read_topic(kafka_bootstrap, topics.usage, min_count=total, timeout=40, settle=1.5)
    finally:
        bridge.terminate()
        bridge.wait(15)
        await publisher.disconnect()
    ids = {json.loads(m.value)["report_id"] for m in msgs}
    missing = {f"rep-{i}" for i in range(total)} - ids
    assert not missing, f"{len(missing)} reports lost, e.g. {sorted(missing)[:5]}"
    assert b"SIGKILL" not in log.read_bytes()  # sanity: the log is the bridge's own


async def store_usage(bootstrap: str, topics: Topics, dsn: str) -> dict[str, int]:
    """Run the stream processor over ``topics`` until the usage topic is committed: report_id → rows stored."""
    from aiokafka import AIOKafkaProducer

    from meterline.clickhouse import get_client
    from stream_workers.processor import Processor
    from stream_workers.settings import WorkerSettings
    from stream_workers.sink import ClickHouseSink
    from tests.integration.stream_workers.workload import committed_total

    settings = WorkerSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=topics.prefix,
                              partitions=topics.partitions, sink_interval_s=0.2, session_timeout_s=6)
    sink = ClickHouseSink(lambda: get_client(dsn))
    assert await sink.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    processor = Processor(settings, sink, producer)
    await processor.start()
    try:
        deadline = time.monotonic() + 30
        while (done := await committed_total(bootstrap, processor.group_id, topics.usage, topics.partitions)
               )[0] < done[1] or done[1] == 0:
            assert time.monotonic() < deadline, f"usage topic not processed: {done}"
            await asyncio.sleep(0.2)
        return dict(sink.query("SELECT report_id, toInt64(count()) FROM usage_events GROUP BY report_id"))
    finally:
        await processor.stop()
        await producer.stop()
        await sink.close()


@pytest.mark.parametrize("dedupe", ["deduplicated", "no-dedupe"])
async def test_bridge_killed_after_the_kafka_ack_before_the_puback(
        kafka_bootstrap: str, topics: Topics, mosquitto: MqttEndpoint, tmp_dir: Path, clickhouse_dsn: str,
        dedupe: str) -> None:
    """The bridge dies at its fault point: report 5 is in Kafka, its PUBACK never left. The broker
    redelivers it to the restarted bridge, so Kafka holds it twice; the workers store it once (the
    negative control switches their deduplication off and stores it twice)."""
    raw_key, _ = await create_key(kafka_bootstrap, topics.keys, "app-ack")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "METERLINE_TOPIC_PREFIX": topics.prefix,
           "MQTT_URL": f"mqtt://{mosquitto.username}:{mosquitto.password}@{mosquitto.host}:{mosquitto.port}",
           "METERLINE_BRIDGE_CLIENT_ID": f"ack-{uuid.uuid4().hex[:8]}",
           "METERLINE_BRIDGE_SHARE_GROUP": f"g{uuid.uuid4().hex[:8]}",
           "METERLINE_GATEWAY_CREATE_TOPICS": "false", "PYTHONUNBUFFERED": "1"}
    updates: list[bytes] = []
    publisher = await tenant_client(mosquitto, clean_session=False, session_expiry_interval=3600)
    publisher.on_message = lambda client, topic, payload, qos, props: updates.append(payload) or 0
    await publisher.connect(mosquitto.host, mosquitto.port)
    publisher.subscribe("billing/keys/status", qos=1)
    total = 20
    ids = [f"ack-{i}" for i in range(total)]
    bridge = _bridge_process({**env, "METERLINE_FAULTS": "bridge.after_produce=kill@5"}, tmp_dir / "first.log")
    try:
        deadline = time.monotonic() + 30  # subscribed once it answers a key list request
        while not updates:
            assert time.monotonic() < deadline and bridge.poll() is None, (tmp_dir / "first.log").read_text()
            publisher.publish("billing/keys/request", b"{}", qos=1)
            with contextlib.suppress(AssertionError):
                await eventually(lambda: bool(updates), 1.0)
        for i, report_id in enumerate(ids):
            publisher.publish("billing/report", msgspec.json.encode(
                {"api_key": raw_key, "module": "llm", "model": "m", "usage": i + 1, "report_id": report_id}), qos=1)
        assert await asyncio.to_thread(bridge.wait, 30) == -signal.SIGKILL
        [died] = fired((tmp_dir / "first.log").read_text(), "bridge.after_produce")
        bridge = _bridge_process(env, tmp_dir / "second.log")
        msgs = await read_topic(kafka_bootstrap, topics.usage, min_count=total + 1, timeout=30, settle=1.0)
    finally:
        bridge.terminate()
        bridge.wait(15)
        await publisher.disconnect()
    in_kafka = Counter(json.loads(m.value)["report_id"] for m in msgs)
    assert set(in_kafka) == set(ids)
    assert in_kafka[died["report_id"]] == 2  # produced, killed before the PUBACK, redelivered, produced again
    assert max(in_kafka.values()) == 2
    with faults.arm("processor.no_dedupe", "on") if dedupe == "no-dedupe" else contextlib.nullcontext():
        stored = await store_usage(kafka_bootstrap, topics, clickhouse_dsn)
    if dedupe == "deduplicated":
        assert stored == dict.fromkeys(ids, 1)
    else:
        assert stored == dict(in_kafka)  # the redelivered report counted twice
