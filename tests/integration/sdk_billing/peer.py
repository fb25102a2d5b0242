"""The billing server's side of the MQTT protocol, played by a plain MQTT client in tests.

It is a transport peer, not a mock of the SDK: it logs in as the bridge, subscribes ``billing/report``
(QoS 1) and ``billing/keys/request`` on the real broker and answers requests with ``billing/keys/status``
as the gateway's bridge does. With ``persistent=True`` it keeps a broker session (clean_session=False, stable
client id) and reconnects by itself, so reports published while it is away wait for it in the broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from gmqtt import Client as MqttClient
from gmqtt.mqtt.constants import MQTTv311

from meterline.local.mosquitto import MqttEndpoint
from tests.waiting import subscribed


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class BillingPeer:
    def __init__(self, endpoint: MqttEndpoint, keys: dict[str, str] | None = None, *, full: bool = False,
                 persistent: bool = False, answer: bool = True) -> None:
        self.endpoint = endpoint
        self.keys = dict(keys or {})  # raw key -> "ok" | "blocked"
        self.full = full
        self.answer = answer
        self.reports: list[dict[str, Any]] = []
        self.key_requests = 0
        self.heartbeats: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._client = MqttClient(f"peer-{uuid.uuid4().hex[:10]}", clean_session=not persistent)
        self._client.set_auth_credentials(endpoint.username, endpoint.password)
        self._client.reconnect_delay = 0.2
        self._client.on_message = self._on_message

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        message = orjson.loads(payload)
        if topic == "billing/report":
            self.reports.append(message)
        elif topic == "billing/keys/request":
            self.key_requests += 1
            if self.answer:
                self.announce()
        elif topic == "billing/heartbeat":
            self.heartbeats.append(message)
        self._changed.set()
        return 0

    def announce(self, keys: dict[str, str] | None = None, *, full: bool | None = None) -> None:
        updates = [{"app_id": f"app-{sha256(k)[:6]}", "api_key_sha256": sha256(k), "status": status,
                    **({"reason": "revoked in test"} if status == "blocked" else {})}
                   for k, status in (keys if keys is not None else self.keys).items()]
        message: dict[str, Any] = {"updates": updates, "timestamp": int(time.time() * 1000)}
        if full if full is not None else self.full:
            message["full"] = True
        self._client.publish("billing/keys/status", orjson.dumps(message), qos=1)

    async def start(self) -> BillingPeer:
        await self._client.connect(self.endpoint.host, self.endpoint.port, version=MQTTv311, keepalive=10)
        await subscribed(self._client, "billing/report", "billing/keys/request", "billing/heartbeat")
        return self

    async def stop(self) -> None:
        await self._client.disconnect()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"peer condition not met within {timeout} s: {len(self.reports)} reports")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass

    def report_ids(self) -> set[str]:
        return {r["report_id"] for r in self.reports}
