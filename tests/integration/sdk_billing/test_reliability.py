"""Reliability against real processes: Mosquitto restarted while reporting, a queue bound during an
outage, and a reporting process SIGKILLed with reports in its spool."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import defaultdict
from pathlib import Path

from billing_sdk import BillingClient, UsageData

from meterline.local.mosquitto import LocalMosquitto, MqttEndpoint
from meterline.local.ports import free_port

from .peer import BillingPeer


def _client(endpoint: MqttEndpoint, **kwargs: object) -> BillingClient:
    options: dict[str, object] = {"ca_file": endpoint.ca_file, "reconnect_min_delay": 0.1,
                                  "reconnect_max_delay": 0.5, "keepalive": 5, "connect_timeout": 5.0}
    options.update(kwargs)
    return BillingClient("localhost", endpoint.tls_port, endpoint.username, endpoint.password, **options)  # type: ignore[arg-type]


def _seqs_by_report_id(peer: BillingPeer) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = defaultdict(set)
    for report in peer.reports:
        seen[report["report_id"]].add(report["metadata"]["seq"])
    return seen


async def test_broker_restart_while_reporting_loses_nothing(mosquitto_process: LocalMosquitto) -> None:
    endpoint = mosquitto_process.endpoint
    peer = await BillingPeer(endpoint, persistent=True).start()
    client = _client(endpoint)
    await client.connect()
    restarted = asyncio.Event()

    async def produce() -> int:
        seq = after = 0
        while after < 100:  # bursts, so reports are in flight when the broker goes away
            for _ in range(10):
                await client.report_usage(UsageData(api_key="k", module="llm", model="m", usage=1,
                                                    metadata={"seq": seq}))
                seq += 1
            after += 10 if restarted.is_set() else 0
            await asyncio.sleep(0.003)
        return seq

    producer = asyncio.create_task(produce())
    await asyncio.sleep(0.3)
    await asyncio.to_thread(mosquitto_process.stop)  # SIGTERM; the same ports come back below
    await asyncio.sleep(0.5)
    assert not client.is_connected()
    await asyncio.to_thread(mosquitto_process.start)
    restarted.set()
    total = await producer
    assert await client.flush(20), client.stats()
    await peer.wait_until(lambda: len(_seqs_by_report_id(peer)) >= total, timeout=20)
    seen = _seqs_by_report_id(peer)
    assert all(len(seqs) == 1 for seqs in seen.values())  # a duplicate always carries its report's id
    assert sorted(s for seqs in seen.values() for s in seqs) == list(range(total))  # every report, once per id
    stats = client.stats()
    assert (stats.accepted, stats.acknowledged, stats.dropped) == (total, total, 0)
    assert client.is_connected()
    await peer.wait_until(lambda: peer.key_requests >= 2)  # the key list is asked for again after reconnecting
    await peer.stop()


async def test_queue_bound_during_an_outage_counts_drops(mosquitto_process: LocalMosquitto) -> None:
    endpoint = mosquitto_process.endpoint
    peer = await BillingPeer(endpoint, persistent=True).start()
    drops: list[int] = []
    client = _client(endpoint, queue_size=5, on_drop=drops.append)
    await client.connect()
    await asyncio.to_thread(mosquitto_process.stop)
    while client.is_connected():
        await asyncio.sleep(0.02)
    for seq in range(8):
        await client.report_usage(UsageData(api_key="k", module="llm", model="m", usage=1, metadata={"seq": seq}))
    assert drops == [1, 2, 3] and client.stats().dropped == 3 and client.stats().pending == 5
    await asyncio.to_thread(mosquitto_process.start)
    assert await client.flush(15)
    await peer.wait_until(lambda: len(_seqs_by_report_id(peer)) >= 5)
    assert sorted(s for seqs in _seqs_by_report_id(peer).values() for s in seqs) == [0, 1, 2, 3, 4]
    await peer.stop()


_CHILD = textwrap.dedent("""
    import asyncio, sys
    from billing_sdk import BillingClient, UsageData

    async def main() -> None:
        client = BillingClient("127.0.0.1", int(sys.argv[1]), "u", "p", tls=False, spool_path=sys.argv[2],
                               reconnect_max_delay=0.2)
        for seq in range(5):
            await client.report_usage(UsageData(api_key="k", module="asr", model="whisper", usage=seq,
                                                metadata={"seq": seq}))
        print("queued", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
""")


async def test_spooled_reports_survive_a_killed_process(mosquitto: MqttEndpoint, tmp_path: Path) -> None:
    spool = tmp_path / "billing-spool.db"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(free_port()), str(spool)],
                             stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 20)  # type: ignore[union-attr]
        assert line.strip() == "queued"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()  # type: ignore[union-attr]
    peer = await BillingPeer(mosquitto).start()
    try:
        client = _client(mosquitto, spool_path=spool, client_id=f"spool-{uuid.uuid4().hex[:6]}")
        assert client.stats().spooled_at_start == 5
        await client.connect()
        assert await client.flush(10)
        await peer.wait_until(lambda: len(peer.reports) >= 5)
        assert sorted(r["usage"] for r in peer.reports) == [0, 1, 2, 3, 4]
        await client.disconnect()
        BillingClient._reset_singleton()
        again = _client(mosquitto, spool_path=spool)
        assert again.stats().spooled_at_start == 0  # acknowledged reports left the spool
    finally:
        await peer.stop()
