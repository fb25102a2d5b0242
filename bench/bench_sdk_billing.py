"""billing_sdk throughput: usage reports acknowledged by a real Mosquitto, against the raw MQTT client.

Baseline (same run, same broker, same TLS listener): a bare gmqtt client publishing the same payloads
with QoS 1 as fast as it can, timed until every PUBACK arrived. Measured: ``report_usage`` through
``BillingClient`` (validation, report id, bounded queue, inflight window, PUBACK tracking), timed until
``flush()`` saw every report acknowledged; once in memory only and once with the on-disk spool. Also the
cost of one ``report_usage`` call (the caller's latency; no network on that path).

Prints reports/s and the ratio to the raw client. Run: ``python bench/bench_sdk_billing.py`` (20 000
reports per run) or ``--quick`` (3 000).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from billing_sdk import BillingClient, UsageData
from gmqtt import Client as MqttClient
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.storage import PersistentStorage

from meterline.local.mosquitto import LocalMosquitto, MqttEndpoint
from meterline.local.ports import free_port


def _payload(i: int) -> bytes:
    return orjson.dumps({"api_key": "bench-key", "module": "llm", "model": "gpt-4", "usage": i,
                         "timestamp": int(time.time() * 1000), "metadata": {"prompt_tokens": i},
                         "report_id": str(uuid.uuid4())})


async def raw_rate(endpoint: MqttEndpoint, n: int) -> float:
    storage = PersistentStorage()
    client = MqttClient(f"bench-raw-{uuid.uuid4().hex[:6]}", persistent_storage=storage)
    client.set_auth_credentials(endpoint.username, endpoint.password)
    await client.connect("localhost", endpoint.tls_port, ssl=endpoint.ssl_context(), version=MQTTv311)
    payloads = [_payload(i) for i in range(n)]
    started = time.perf_counter()
    for i, payload in enumerate(payloads):
        client.publish("billing/report", payload, qos=1)
        if i % 50 == 49:
            await asyncio.sleep(0)  # let PUBACKs in, as any real producer would
    await storage.wait_empty()
    elapsed = time.perf_counter() - started
    await client.disconnect()
    return n / elapsed


async def sdk_rate(endpoint: MqttEndpoint, n: int, spool: Path | None) -> tuple[float, float]:
    BillingClient._reset_singleton()
    client = await asyncio.to_thread(BillingClient, "localhost", endpoint.tls_port, endpoint.username,
                                     endpoint.password, ca_file=endpoint.ca_file, queue_size=n + 10,
                                     spool_path=spool)
    await client.connect()
    reports = [UsageData(api_key="bench-key", module="llm", model="gpt-4", usage=i, metadata={"prompt_tokens": i})
               for i in range(n)]
    call_ns: list[int] = []
    started = time.perf_counter()
    for i, report in enumerate(reports):
        t0 = time.perf_counter_ns()
        await client.report_usage(report)
        call_ns.append(time.perf_counter_ns() - t0)
        if i % 50 == 49:
            await asyncio.sleep(0)
    assert await client.flush(120), client.stats()
    elapsed = time.perf_counter() - started
    stats = client.stats()
    assert stats.acknowledged == n and stats.dropped == 0, stats
    await client.disconnect()
    BillingClient._reset_singleton()
    return n / elapsed, statistics.median(call_ns) / 1000


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-billing-") as tmp:
        broker = LocalMosquitto(Path(tmp) / "mosquitto", port=free_port(), tls_port=free_port())
        broker.start()
        try:
            login = broker.tenant_login("bench-tenant", "bench")  # a tenant's login, as billing clients have
            endpoint = dataclasses.replace(broker.endpoint, username=login.username, password=login.password)
            await raw_rate(endpoint, min(n, 1000))  # warm-up
            raw = await raw_rate(endpoint, n)
            memory, call_us = await sdk_rate(endpoint, n, None)
            spooled, spool_call_us = await sdk_rate(endpoint, n, Path(tmp) / "spool.db")
        finally:
            broker.stop()
    print(f"reports per run: {n} (TLS, QoS 1, local Mosquitto)")
    print(f"raw gmqtt publish, until every PUBACK : {raw:10.0f} reports/s  (baseline 1.00)")
    print(f"BillingClient, in memory              : {memory:10.0f} reports/s  ({memory / raw:.2f} x raw)")
    print(f"BillingClient, with SQLite spool      : {spooled:10.0f} reports/s  ({spooled / raw:.2f} x raw)")
    print(f"report_usage() call, median           : {call_us:8.1f} us in memory, {spool_call_us:.1f} us spooled")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 000 reports per run instead of 20 000")
    args = parser.parse_args()
    asyncio.run(main(3_000 if args.quick else 20_000))
