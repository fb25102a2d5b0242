"""MQTT bridge throughput: QoS 1 reports from Mosquitto into Kafka, against raw Mosquitto delivery.

Same run, same publisher, same payloads: (1) baseline — a plain subscriber (a process of its own, as the
bridge is) receives the reports
straight from Mosquitto; (2) the bridge (``python -m gateway.bridge``, its own process) delivers
them into the usage topic, each PUBACK sent only after Kafka acknowledged. Prints reports/s, the
ratio, and the issue-13 targets (>= 20k reports/s bridged, >= 0.8x raw) as TARGET lines.

    python bench/bench_bridge.py [--quick] [--reports 60000] [--profile stacks.txt]

``--profile`` samples the bridge with py-spy (``pip install py-spy``) while it bridges the measured
reports and writes raw stacks (``py-spy``'s ``--format raw``, one stack and its count a line).

Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts a local Apache Kafka; always starts its own
Mosquitto.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer
from gmqtt import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.keys.admin import create_key  # noqa: E402
from meterline.kafka_admin import create_topics  # noqa: E402
from meterline.local.kafka import LocalKafka  # noqa: E402
from meterline.local.mosquitto import LocalMosquitto, MqttEndpoint  # noqa: E402
from meterline.local.ports import free_port  # noqa: E402
from schemas.topics import Topics  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from _common import cpu_seconds, load_average, target  # noqa: E402

TARGET_RATE, TARGET_RATIO = 20_000, 0.8


class _ReportId(msgspec.Struct):
    report_id: str


_report_id = msgspec.json.Decoder(_ReportId)  # the counter decodes only the id of each usage record


async def connect(ep: MqttEndpoint, name: str, on_message: Any = None, client_id: str | None = None) -> Client:
    client = Client(client_id or f"{name}-{uuid.uuid4().hex[:6]}")
    client.set_auth_credentials(ep.username, ep.password)
    if on_message is not None:
        client.on_message = on_message
    await client.connect(ep.host, ep.port)
    return client


async def publish_all(publisher: Client, payloads: list[bytes]) -> None:
    """Publish ``payloads`` (QoS 1) and return once the broker acknowledged them all."""
    # stay under the receive maximum the broker announced (its max_inflight_messages)
    window = int(publisher._connection._handler.properties.get("receive_maximum", [100])[0] * 0.8)
    for payload in payloads:
        publisher.publish("billing/report", payload, qos=1)
        while len(publisher._persistent_storage._messages) >= window:  # get_all() copies them
            await asyncio.sleep(0.001)
    while publisher._persistent_storage.get_all():
        await asyncio.sleep(0.005)


class Cpu:
    """CPU seconds the broker, the bridge or plain subscriber, and this process (publisher; Kafka counter)
    used in a measured part."""

    kafka = 0  # the local Kafka's pid, when the bench started one

    def __init__(self, broker: int, client: int, name: str) -> None:
        self.pids = {"Mosquitto": broker, name: client, **({"Kafka": self.kafka} if self.kafka else {})}
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()} | {"bench": time.process_time()}

    def used(self) -> str:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()} | {"bench": time.process_time()}
        return ", ".join(f"{name} {now[name] - self.start[name]:.1f}" for name in now)


async def plain_subscriber(n: int) -> None:
    """``--plain-subscriber N``: the baseline, a process of its own like the bridge. It subscribes the way
    the bridge does (shared, QoS 1, MQTT 5), acknowledges at once, says ``subscribed`` and, once it got
    ``n`` reports, the wall-clock time."""
    host, port, username, password = os.environ["BENCH_MQTT"].split(":", 3)
    got = 0
    done = asyncio.Event()

    def on_message(client: Client, topic: str, payload: bytes, qos: int, props: Any) -> int:
        nonlocal got
        got += 1
        if got == n:
            done.set()
        return 0

    subscriber = Client(f"raw-{uuid.uuid4().hex[:6]}")
    subscriber.set_auth_credentials(username, password)
    subscriber.on_message = on_message
    subscriber.on_subscribe = lambda *_: print("subscribed", flush=True)
    await subscriber.connect(host, int(port))
    subscriber.subscribe(f"$share/raw{uuid.uuid4().hex[:6]}/billing/report", qos=1)
    await done.wait()
    print(f"done {time.time()}", flush=True)
    await subscriber.disconnect()


async def raw_delivery(ep: MqttEndpoint, tenant: MqttEndpoint, payloads: list[bytes], broker: int) -> float:
    env = {**os.environ, "BENCH_MQTT": f"{ep.host}:{ep.port}:{ep.username}:{ep.password}"}
    proc = subprocess.Popen([sys.executable, __file__, "--plain-subscriber", str(len(payloads))], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    publisher = await connect(tenant, "pub", client_id=tenant.username)  # a tenant login's bound client id
    try:
        assert await asyncio.to_thread(proc.stdout.readline) == "subscribed\n", "the plain subscriber failed"
        started, cpu = time.time(), Cpu(broker, proc.pid, "subscriber")
        await publish_all(publisher, payloads)
        finished = float((await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 300)).split()[1])
        print(f"raw: CPU seconds {cpu.used()} over {finished - started:.1f} s")
        return len(payloads) / (finished - started)
    finally:
        proc.wait(30)
        await publisher.disconnect()


async def count_topic(bootstrap: str, topic: str, ids: set[str], timeout: float, *, fail: bool = True) -> float:
    """Wait until reports with all ``ids`` are in ``topic``; return when the last arrived (0: never)."""
    # the last report is seen at most 25 ms after Kafka has it (not up to 500 ms), and fetches of at least
    # 256 KiB meanwhile: the counter shares the cores with what it measures
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                fetch_max_wait_ms=25, fetch_min_bytes=256 * 1024)
    await consumer.start()
    missing = set(ids)
    expected = len(ids)
    deadline = time.monotonic() + timeout
    try:
        while missing and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    missing.discard(_report_id.decode(record.value).report_id)
    finally:
        await consumer.stop()
    seen = expected - len(missing)
    if missing:
        if not fail:
            return 0.0
        raise SystemExit(f"only {seen}/{expected} reports reached Kafka")
    return time.perf_counter()


async def bridged(ep: MqttEndpoint, tenant: MqttEndpoint, bootstrap: str, topics: Topics, payloads: list[bytes],
                  log: Path, broker: int, profile: Path | None = None) -> float:
    ids = [msgspec.json.decode(p)["report_id"] for p in payloads]
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "METERLINE_TOPIC_PREFIX": topics.prefix,
           "MQTT_URL": f"mqtt://{ep.username}:{ep.password}@{ep.host}:{ep.port}",
           "METERLINE_GATEWAY_CREATE_TOPICS": "false",
           "METERLINE_BRIDGE_CLIENT_ID": f"bench-{uuid.uuid4().hex[:6]}"}
    out = log.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.bridge"], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT)
    out.close()
    publisher = await connect(tenant, "pub", client_id=tenant.username)
    try:
        warm = 0  # until the bridge has subscribed, reports go nowhere: probe until one arrives
        while True:
            warm += 1
            await publish_all(publisher, [payloads[0]])
            if await count_topic(bootstrap, topics.usage, {ids[0]}, 2, fail=False):
                break
            if warm > 30:
                raise SystemExit(f"the bridge did not start; see {log}")
        spy = None
        if profile is not None:  # py-spy samples the bridge during the measured part only
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw",
                                    "--rate", "250", "--nonblocking", "-o", str(profile), "--pid", str(proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await asyncio.sleep(1)  # py-spy attaches
        counter = asyncio.create_task(count_topic(bootstrap, topics.usage, set(ids[1:]), 300))
        started, cpu = time.perf_counter(), Cpu(broker, proc.pid, "bridge")
        await publish_all(publisher, payloads[1:])
        finished = await counter
        print(f"bridged: CPU seconds {cpu.used()} over {finished - started:.1f} s")
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        return (len(payloads) - 1) / (finished - started)
    finally:
        proc.terminate()
        proc.wait(30)
        await publisher.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 reports (about a second at the target rate)")
    parser.add_argument("--reports", type=int, default=60_000, help="at most 100,000: Mosquitto's queue per client")
    parser.add_argument("--profile", type=Path, help="record the bridge with py-spy into this file (raw stacks)")
    parser.add_argument("--plain-subscriber", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_subscriber:
        asyncio.run(plain_subscriber(args.plain_subscriber))
        return
    n = 20_000 if args.quick else args.reports
    work = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            kafka = LocalKafka(work / "kafka", port=free_port(), controller_port=free_port()).start()
            stack.callback(kafka.stop)
            bootstrap = kafka.bootstrap_servers
            Cpu.kafka = kafka.pid or 0
        mosquitto = LocalMosquitto(work / "mosquitto", port=free_port(), tls_port=free_port()).start()
        stack.callback(mosquitto.stop)
        login = mosquitto.tenant_login("bench-tenant", "bench-app")  # reports come from a tenant's login
        tenant = dataclasses.replace(mosquitto.endpoint, username=login.username, password=login.password)
        topics = Topics(prefix=f"benchb{uuid.uuid4().hex[:6]}.", partitions=6)
        asyncio.run(create_topics(bootstrap, topics))
        key, _ = asyncio.run(create_key(bootstrap, topics.keys, "bench-app"))
        payloads = [msgspec.json.encode({"app_id": "bench-app", "api_key": key, "module": "llm", "model": "gpt-4",
                                         "usage": 150, "timestamp": 1_700_000_000_000 + i,
                                         "report_id": uuid.uuid4().hex, "metadata": {"customer": f"c{i % 9}"}})
                    for i in range(n + 1)]
        broker = mosquitto.pid or 0
        raw = asyncio.run(raw_delivery(mosquitto.endpoint, tenant, payloads[1:], broker))
        bridge = asyncio.run(bridged(mosquitto.endpoint, tenant, bootstrap, topics, payloads, work / "bridge.log",
                                     broker, args.profile))
        print(f"{n} QoS 1 reports, {len(payloads[0])} bytes each")
        print(f"raw Mosquitto delivery      : {raw:9,.0f} reports/s")
        print(f"bridge Mosquitto -> Kafka   : {bridge:9,.0f} reports/s  ratio to raw = {bridge / raw:.2f}")
        warnings = [line for line in (work / "bridge.log").read_text(errors="replace").splitlines()
                    if "WARNING" in line or "ERROR" in line]
        print(f"bridge log: {len(warnings)} warning/error line(s){': ' + warnings[0] if warnings else ''}")
        note = f"quick: {n:,} reports" if args.quick else ""
        target("bridge reports/s", f"{bridge / 1000:.1f}k reports/s", f">= {TARGET_RATE // 1000}k reports/s",
               bridge >= TARGET_RATE, note)
        target("bridge vs raw", f"{bridge / raw:.2f}x raw ({raw / 1000:.1f}k reports/s)", f">= {TARGET_RATIO}x raw",
               bridge / raw >= TARGET_RATIO, note)
        print(load_average())
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
