"""Reliability against real processes: Mosquitto crashed and restarted with reports in flight, a queue
bound during an outage, and a reporting process SIGKILLed with reports in its spool."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from billing_sdk import BillingClient, UsageData

from meterline.local.mosquitto import LocalMosquitto, MqttEndpoint
from meterline.local.ports import free_port
from tests.mqtt import new_tenant
from tests.waiting import eventually

from .peer import BillingPeer


def _client(endpoint: MqttEndpoint, **kwargs: object) -> BillingClient:
    options: dict[str, object] = {"ca_file": endpoint.ca_file, "reconnect_min_delay": 0.1,
                                  "reconnect_max_delay": 0.5, "keepalive": 5, "connect_timeout": 5.0}
    options.update(kwargs)
    return BillingClient("localhost", endpoint.tls_port, endpoint.username, endpoint.password, **options)  # type: ignore[arg-type]


async def as_tenant(endpoint: MqttEndpoint) -> MqttEndpoint:
    """``endpoint`` with a fresh tenant's login, for the SDK (the peer keeps the bridge's)."""
    login = await new_tenant(endpoint)
    return dataclasses.replace(endpoint, username=login.username, password=login.password)


def _seqs_by_report_id(peer: BillingPeer) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = defaultdict(set)
    for report in peer.reports:
        seen[report["report_id"]].add(report["metadata"]["seq"])
    return seen


def _pid(broker: LocalMosquitto) -> int:
    pid = getattr(broker, "pid", None) or broker._proc.pid  # type: ignore[union-attr]
    assert isinstance(pid, int)
    return pid


async def _wait_persisted(broker: LocalMosquitto, since: float) -> None:
    """Until Mosquitto autosaved its state (the peer's session and subscriptions) after ``since``."""
    db = broker.data_dir / "persistence" / "mosquitto.db"
    deadline = time.monotonic() + 10
    while not (db.exists() and db.stat().st_mtime > since):
        assert time.monotonic() < deadline, "Mosquitto did not save its state"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("resend", ["resend", "no-resend"])
async def test_broker_crash_with_reports_in_flight_loses_nothing(mosquitto_process: LocalMosquitto,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 resend: str) -> None:
    """Mosquitto is frozen (SIGSTOP) so the SDK's reports stay unacknowledged, then SIGKILLed and restarted.

    The SDK publishes the reports it holds in flight again on the new connection (``resent``). The
    negative control is an SDK that forgets its in-flight reports on a lost connection (gmqtt's own
    behaviour when the broker lost the session, and the original SDK's): exactly those are lost.
    """
    endpoint = mosquitto_process.endpoint
    peer = await BillingPeer(endpoint, persistent=True).start()
    subscribed_at = time.time()
    client = _client(await as_tenant(endpoint))
    forgotten: list[int] = []
    if resend == "no-resend":
        queue = client._queue

        def forget() -> int:
            forgotten.append(queue.inflight)
            queue._inflight.clear()
            return 0

        monkeypatch.setattr(queue, "requeue_inflight", forget)
    await client.connect()

    def report(seq: int) -> UsageData:
        return UsageData(api_key="k", module="llm", model="m", usage=1, metadata={"seq": seq})

    for seq in range(50):
        await client.report_usage(report(seq))
    assert await client.flush(10)
    await _wait_persisted(mosquitto_process, subscribed_at)
    os.kill(_pid(mosquitto_process), signal.SIGSTOP)  # from here no PUBACK comes back
    try:
        for seq in range(50, 80):
            await client.report_usage(report(seq))
        deadline = time.monotonic() + 10
        while client.stats().inflight == 0:
            assert time.monotonic() < deadline, client.stats()
            await asyncio.sleep(0.01)
        in_flight = client.stats().inflight
    finally:
        await asyncio.to_thread(mosquitto_process.kill)  # a frozen process dies of SIGKILL all the same
    await asyncio.to_thread(mosquitto_process.start)
    for seq in range(80, 100):  # and reporting goes on after the restart
        await client.report_usage(report(seq))
    assert await client.flush(20), client.stats()
    stats = client.stats()
    assert stats.accepted == 100 and stats.dropped == 0
    if resend == "resend":
        await peer.wait_until(lambda: len(_seqs_by_report_id(peer)) >= 100, timeout=20)
        seen = _seqs_by_report_id(peer)
        assert all(len(seqs) == 1 for seqs in seen.values())  # a duplicate always carries its report's id
        assert sorted(s for seqs in seen.values() for s in seqs) == list(range(100))  # every report, once per id
        assert stats.resent >= in_flight > 0 and stats.acknowledged == 100
        await peer.wait_until(lambda: peer.key_requests >= 2)  # the key list is asked for again after reconnecting
    else:
        await peer.wait_until(lambda: len(_seqs_by_report_id(peer)) >= 100 - forgotten[0], timeout=20)
        delivered = {s for seqs in _seqs_by_report_id(peer).values() for s in seqs}
        lost = set(range(100)) - delivered
        assert forgotten[0] >= in_flight > 0 and stats.resent == 0
        assert lost and lost <= set(range(50, 80)) and len(lost) == forgotten[0]
    assert client.is_connected()
    await peer.stop()


async def test_queue_bound_during_an_outage_counts_drops(mosquitto_process: LocalMosquitto) -> None:
    endpoint = mosquitto_process.endpoint
    peer = await BillingPeer(endpoint, persistent=True).start()
    drops: list[int] = []
    client = _client(await as_tenant(endpoint), queue_size=5, on_drop=drops.append)
    await client.connect()
    await asyncio.to_thread(mosquitto_process.stop)
    await eventually(lambda: not client.is_connected(), 10, "the client to lose the stopped broker", interval=0.02)
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
        await asyncio.sleep(60)  # alive with its spool, until the test kills it

    asyncio.run(main())
""")


async def test_spooled_reports_survive_a_killed_process(mqtt_server: MqttEndpoint,
        mosquitto: MqttEndpoint, tmp_path: Path) -> None:
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
    peer = await BillingPeer(mqtt_server).start()
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
