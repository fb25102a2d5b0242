"""The bridge is ready (``connected``, MQTT in ``/readyz``) only once the broker GRANTED its subscriptions.

Until the broker has the bridge's shared subscription, a report published to a new share group reaches
nobody and is lost. The first test holds the bridge's SUBSCRIBE in a TCP proxy (a fault at the transport
boundary) and shows that window: a report published in it is lost, and the bridge must not say ready;
once the SUBSCRIBE passes and its SUBACK came back, it is ready and a report gets through. The second
test gives the bridge a login without the bridge role: the broker refuses the subscriptions, so the bridge
stays not ready and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.main import create_app
from gateway.runtime import GatewayRuntime
from meterline.local.mosquitto import MqttEndpoint, MqttLogin
from schemas.events import usage_record_decoder
from schemas.mqtt import REPORT
from schemas.topics import Topics
from tests.integration.gateway.conftest import make_settings, new_key, read_topic
from tests.integration.gateway.test_bridge import close, mqtt_client, report
from tests.waiting import eventually

_SUBSCRIBE = 8  # MQTT control packet type


class SubscribeHoldingProxy:
    """A TCP proxy to the broker that forwards everything but holds the client's SUBSCRIBE until released."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            self._server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection(self.host, self.port)
        for pipe in (self._upstream(client_r, broker_w), self._pipe(broker_r, client_w)):
            task = asyncio.create_task(pipe)
            self._tasks.add(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client -> broker, one MQTT packet at a time (fixed header, variable-length remaining length)."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                header = await reader.readexactly(1)
                length, shift, raw_length = 0, 0, b""
                while True:
                    byte = await reader.readexactly(1)
                    raw_length += byte
                    length |= (byte[0] & 0x7F) << shift
                    shift += 7
                    if not byte[0] & 0x80:
                        break
                body = await reader.readexactly(length)
                if header[0] >> 4 == _SUBSCRIBE:
                    self.held.set()
                    await self.release.wait()
                writer.write(header + raw_length + body)
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def gateway_with_bridge(kafka_bootstrap: str, topics: Topics, mqtt_url: str,
                              **overrides: Any) -> AsyncIterator[tuple[GatewayRuntime, httpx.AsyncClient]]:
    settings = make_settings(kafka_bootstrap, topics, bridge=True, mqtt_url=mqtt_url,
                             bridge_share_group=f"g{uuid.uuid4().hex[:8]}", **overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
        yield app.state.runtime, http


async def test_ready_only_once_the_broker_granted_the_subscriptions(kafka_bootstrap: str, topics: Topics,
                                                                    mosquitto: MqttEndpoint) -> None:
    proxy = SubscribeHoldingProxy(mosquitto.host, mosquitto.port)
    port = await proxy.start()
    url = f"mqtt://{mosquitto.username}:{mosquitto.password}@127.0.0.1:{port}"
    try:
        async with gateway_with_bridge(kafka_bootstrap, topics, url,
                                       bridge_client_id=f"meterline-bridge-{uuid.uuid4().hex[:8]}") as (runtime, http):
            bridge = runtime.bridge
            assert bridge is not None
            key = await new_key(runtime, "agent-r")
            await asyncio.wait_for(proxy.held.wait(), 10)  # the SUBSCRIBE left the bridge; the broker has not got it
            assert not bridge.connected
            answer = await http.get("/readyz")
            assert answer.status_code == 503 and answer.json()["mqtt"] is False
            client = await mqtt_client(mosquitto)
            try:
                client.publish(REPORT, report(key, report_id="in-the-window"), qos=1)  # reaches no subscriber
                await eventually(lambda: client._persistent_storage.is_empty, 10, "the broker's PUBACK")  # noqa: SLF001
                proxy.release.set()
                await bridge.wait_connected(10)
                assert (await http.get("/readyz")).json()["mqtt"] is True
                client.publish(REPORT, report(key, report_id="after-ready"), qos=1)
                msgs = await read_topic(kafka_bootstrap, runtime.topics.usage, min_count=1)
            finally:
                await close(client)
    finally:
        await proxy.stop()
    # the report of the window was lost: that is why "ready" has to wait for the SUBACK
    assert [usage_record_decoder.decode(m.value).report_id for m in msgs] == ["after-ready"]


async def test_a_refused_subscription_keeps_the_bridge_not_ready(kafka_bootstrap: str, topics: Topics,
                                                                 mosquitto: MqttEndpoint, tenant: MqttLogin,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.bridge.mqtt")
    url = f"mqtt://{tenant.username}:{tenant.password}@{mosquitto.host}:{mosquitto.port}"
    # a tenant's login (no bridge role), with the client id the broker binds it to
    async with gateway_with_bridge(kafka_bootstrap, topics, url, bridge_client_id=tenant.username) as (runtime, http):
        refused = await eventually(lambda: [r for r in caplog.records if "refused the subscription" in r.getMessage()],
                                   10, "the bridge's error line about the refused subscription")
        assert refused[0].levelname == "ERROR" and "NOT READY" in refused[0].getMessage()
        assert "billing/report (0x87)" in refused[0].getMessage()
        assert runtime.bridge is not None and not runtime.bridge.connected
        answer = await http.get("/readyz")
        assert answer.status_code == 503 and answer.json()["mqtt"] is False
