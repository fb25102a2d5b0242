"""The broker's access rules against real Mosquitto: what a tenant login may not do, it cannot do.

Each refusal is shown by its effect, not only by the SUBACK code: a message that would reach a refused
subscription is sent first, then a message the tenant may receive (``billing/keys/status``, published by
the bridge's login). The broker delivers to one client in order, so once the second arrived the first
would have too — the tenant received nothing it was refused, without the test waiting a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import stat
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gmqtt import Client, Subscription
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError

from meterline.local.mosquitto import LocalMosquitto, MqttEndpoint, MqttLogin
from schemas.mqtt import KEYS_REQUEST, KEYS_STATUS, KEYS_UPDATE, REPORT
from tests.mqtt import new_tenant
from tests.waiting import eventually, subscribed

REPORT_BODY = b'{"api_key": "ml_sk_' + b"a" * 64 + b'", "module": "llm", "model": "m", "usage": 1}'


class Peer:
    """One MQTT connection that records what it receives."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.received: list[tuple[str, bytes]] = []
        client.on_message = self._on_message

    def _on_message(self, _c: Client, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        self.received.append((topic, payload))
        return 0

    def topics(self) -> list[str]:
        return [t for t, _ in self.received]

    async def subscribe(self, *topics: str) -> tuple[int, ...]:
        """SUBACK codes, one per topic (0x80 and above: refused)."""
        granted: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
        self.client.on_subscribe = lambda _c, _mid, qos, _p: granted.done() or granted.set_result(tuple(qos))
        self.client.subscribe([Subscription(t, qos=1) for t in topics])
        return await asyncio.wait_for(granted, 10)


@contextlib.asynccontextmanager
async def connected(ep: MqttEndpoint, user: str, password: str, *, tls: bool, client_id: str | None = None,
                    clean: bool = True, version: int = MQTTv311) -> AsyncIterator[Peer]:
    client = Client(client_id or f"acl-{uuid.uuid4().hex[:8]}", clean_session=clean,
                    session_expiry_interval=0 if clean else 3600)
    client.set_auth_credentials(user, password)
    peer = Peer(client)  # before connecting: a resumed session's messages arrive right after the CONNACK
    await client.connect(ep.host, ep.tls_port if tls else ep.port, ssl=ep.ssl_context() if tls else False,
                         version=version, keepalive=10)
    try:
        yield peer
    finally:
        with contextlib.suppress(ssl.SSLError):  # a PUBACK crossing our TLS close_notify
            await client.disconnect()


def as_tenant(ep: MqttEndpoint, login: MqttLogin, **kw: Any) -> contextlib.AbstractAsyncContextManager[Peer]:
    return connected(ep, login.username, login.password, tls=True, **kw)


def as_bridge(ep: MqttEndpoint, **kw: Any) -> contextlib.AbstractAsyncContextManager[Peer]:
    """The bridge's login, over MQTT 5 as the bridge speaks it (its session then outlives the connection)."""
    return connected(ep, ep.username, ep.password, tls=False, version=MQTTv50, **kw)


async def barrier(bridge: Peer, *readers: Peer) -> None:
    """Publish a key status as the bridge and wait until every reader has it (see the module doc)."""
    marker = uuid.uuid4().hex.encode()
    bridge.client.publish(KEYS_STATUS, b'{"updates": [], "timestamp": 1, "m": "' + marker + b'"}', qos=1)
    await eventually(lambda: all(any(marker in p for _, p in r.received) for r in readers), 10,
                     "the barrier message at every reader")


@pytest.mark.parametrize("topic", ["#", REPORT, "billing/#", "$share/{group}/billing/report", "$share/{group}/#",
                                   "$SYS/#", KEYS_UPDATE, KEYS_REQUEST])
async def test_a_tenant_subscription_outside_its_role_is_refused_and_receives_nothing(
        mosquitto: MqttEndpoint, tenant: MqttLogin, topic: str) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    topic = topic.format(group=group)
    reporter = await new_tenant(mosquitto)
    async with as_bridge(mosquitto) as bridge, as_tenant(mosquitto, tenant) as thief, \
            as_tenant(mosquitto, reporter) as source:
        await subscribed(bridge.client, f"$share/{group}/{REPORT}", f"$share/{group}/{KEYS_REQUEST}")
        codes = await thief.subscribe(topic, KEYS_STATUS)
        for _ in range(10):  # reports and key requests: what the tenant must neither read nor divert
            source.client.publish(REPORT, REPORT_BODY, qos=1)
            source.client.publish(KEYS_REQUEST, b'{"timestamp": 1}', qos=1)
        await eventually(lambda: len(bridge.received) == 20, 10, "all 20 messages at the bridge's login")
        await barrier(bridge, thief)
    assert codes[0] >= 0x80, f"{topic} was granted (SUBACK {codes[0]:#x})"
    assert thief.topics() == [KEYS_STATUS], f"{topic} received {thief.topics()}"  # no report, no $SYS


async def test_forged_key_updates_reach_no_client(mosquitto: MqttEndpoint, tenant: MqttLogin) -> None:
    legacy = await new_tenant(mosquitto, legacy=True)
    forged = b'{"updates": [], "timestamp": 1, "full": true}'  # would make every SDK refuse every key
    async with as_bridge(mosquitto) as bridge, as_tenant(mosquitto, tenant) as forger, \
            as_tenant(mosquitto, legacy) as old_client, as_tenant(mosquitto, await new_tenant(mosquitto)) as sdk:
        await subscribed(old_client.client, KEYS_UPDATE, KEYS_STATUS)
        await subscribed(sdk.client, KEYS_STATUS)
        forger.client.publish(KEYS_UPDATE, forged, qos=1)
        forger.client.publish(KEYS_STATUS, forged, qos=1)
        await barrier(bridge, old_client, sdk)
    assert forged not in [p for _, p in old_client.received + sdk.received]
    assert len(old_client.received) == len(sdk.received) == 1  # the bridge's message only


async def test_a_tenant_cannot_take_over_the_bridge_session(mosquitto: MqttEndpoint, tenant: MqttLogin) -> None:
    """The bridge's persistent session keeps what arrived while it was away, whatever a tenant tries."""
    bridge_id, group = f"meterline-bridge-{uuid.uuid4().hex[:6]}", f"g{uuid.uuid4().hex[:8]}"
    async with as_bridge(mosquitto, client_id=bridge_id, clean=False) as bridge:
        await subscribed(bridge.client, f"$share/{group}/{REPORT}")
    reporter = await new_tenant(mosquitto)
    async with as_tenant(mosquitto, reporter) as source:
        for _ in range(3):
            source.client.publish(REPORT, REPORT_BODY, qos=1)
        await eventually(lambda: source.client._persistent_storage.is_empty, 10,  # noqa: SLF001
                         "the broker's PUBACK of the 3 reports")
    # the services' listener: the tenant's login is bound to its own client id
    with pytest.raises(MQTTConnectError):
        async with connected(mosquitto, tenant.username, tenant.password, tls=False, client_id=bridge_id,
                             clean=False):
            pass
    # the tenants' listener: the client id becomes the login, whatever the client asked for
    async with as_tenant(mosquitto, tenant, client_id=bridge_id, clean=False) as thief:
        await subscribed(thief.client, KEYS_STATUS)
        async with as_bridge(mosquitto, client_id=bridge_id, clean=False) as back:
            await eventually(lambda: len(back.received) == 3, 10, "the 3 reports kept in the bridge's session")
            await barrier(back, thief)
    assert thief.topics() == [KEYS_STATUS]


async def test_reports_queued_for_an_offline_bridge_stay_in_a_private_file(
        mosquitto_process: LocalMosquitto) -> None:
    """What the broker keeps on disk while the bridge is away: the reports as published (the original
    protocol carries raw keys), in a file only the broker's user can read (0600 in a 0700 directory)."""
    ep = mosquitto_process.endpoint
    async with as_bridge(ep, client_id="meterline-bridge-disk", clean=False) as bridge:
        await subscribed(bridge.client, f"$share/disk/{REPORT}")
    marker = uuid.uuid4().hex
    async with as_tenant(ep, await new_tenant(ep)) as source:
        source.client.publish(REPORT, REPORT_BODY.replace(b'"m"', f'"{marker}"'.encode()), qos=1)
        await eventually(lambda: source.client._persistent_storage.is_empty, 10)  # noqa: SLF001
    db = mosquitto_process.data_dir / "persistence" / "mosquitto.db"
    await eventually(lambda: db.exists() and marker.encode() in db.read_bytes(), 10, "the report saved (autosave 1 s)")
    for path, mode in ((db, 0o600), (db.parent, 0o700), (mosquitto_process.data_dir, 0o700)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, f"{path} is {stat.S_IMODE(path.stat().st_mode):o}"
