"""A client of the ORIGINAL billing protocol, end to end: TLS Mosquitto -> bridge -> Kafka -> worker -> ClickHouse.

The client is written here from the original SDK's wire format (its README): it connects with TLS and a
password, subscribes ``billing/keys/update``, asks on ``billing/keys/request``, accepts a key only when
an update lists that RAW key as ``ok`` (and rejects a whole message when an entry lacks ``api_key``, as
the original does), and reports ``{"app_id", "api_key", "module", "model", "usage", "timestamp",
"metadata"}`` with QoS 1 and no ``report_id``. Its key was made with ``--legacy-mqtt`` and its login with
``--legacy``.
"""

from __future__ import annotations

import contextlib
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from gmqtt import Client
from gmqtt.mqtt.constants import MQTTv311

from gateway.keys.format import hash_key
from meterline.clickhouse import get_client
from meterline.local.mosquitto import MqttEndpoint, MqttLogin
from schemas.topics import Topics
from stream_workers.processor import Processor
from stream_workers.settings import WorkerSettings
from stream_workers.sink import ClickHouseSink
from tests.integration.gateway.test_bridge import SECRET, new_key, new_legacy_key, start_bridged
from tests.mqtt import new_tenant
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)


class OriginalProtocolClient:
    """The original billing SDK's side of the wire, nothing more."""

    def __init__(self, ep: MqttEndpoint, login: MqttLogin) -> None:
        self.ep, self.login = ep, login
        self.valid_keys: dict[str, str] = {}  # raw key -> status, as the original SDK keeps them
        self.rejected_messages = 0
        self._client = Client(f"billing-{uuid.uuid4().hex[:8]}")  # the original picks a random id
        self._client.set_auth_credentials(login.username, login.password)
        self._client.on_message = self._on_message

    def _on_message(self, _c: Client, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        message = orjson.loads(payload)
        updates = message["updates"]
        if any("api_key" not in entry for entry in updates):  # the original fails on the whole message
            self.rejected_messages += 1
            return 0
        for entry in updates:
            self.valid_keys[entry["api_key"]] = entry["status"]
        return 0

    async def connect(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ep.ca_file))
        await self._client.connect(self.ep.host, self.ep.tls_port, ssl=context, version=MQTTv311)
        self._client.subscribe("billing/keys/update", qos=1)
        self._client.publish("billing/keys/request", orjson.dumps({"timestamp": int(time.time() * 1000)}), qos=1)

    def is_valid(self, api_key: str) -> bool:
        return self.valid_keys.get(api_key) == "ok"

    def report_usage(self, api_key: str, module: str, model: str, usage: int, metadata: dict[str, Any]) -> None:
        self._client.publish("billing/report", orjson.dumps({
            "app_id": "legacy-app", "api_key": api_key, "module": module, "model": model, "usage": usage,
            "timestamp": int(time.time() * 1000), "metadata": metadata}), qos=1)

    async def disconnect(self) -> None:
        await eventually(lambda: self._client._persistent_storage.is_empty, 10, "PUBACKs")  # noqa: SLF001
        with contextlib.suppress(ssl.SSLError):
            await self._client.disconnect()


@pytest.fixture
async def worker(kafka_bootstrap: str, topics: Topics, clickhouse_dsn: str) -> AsyncIterator[ClickHouseSink]:
    """The stream worker's processor and ClickHouse sink, in this process."""
    settings = WorkerSettings(kafka_bootstrap_servers=kafka_bootstrap, clickhouse_url=clickhouse_dsn,
                              topic_prefix=topics.prefix, partitions=topics.partitions, sink_batch_size=500,
                              sink_interval_s=0.2, session_timeout_s=6, sink_retry_max_s=0.5)
    sink = ClickHouseSink(lambda: get_client(clickhouse_dsn), retry_max_s=0.5)
    assert await sink.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    processor = Processor(settings, sink, producer)
    await processor.start()
    try:
        yield sink
    finally:
        await processor.stop()
        await producer.stop()
        await sink.close()


async def test_an_original_protocol_client_is_billed_into_usage_events(
        kafka_bootstrap: str, topics: Topics, mosquitto: MqttEndpoint, worker: ClickHouseSink) -> None:
    async with start_bridged(kafka_bootstrap, topics, mosquitto, key_secret=SECRET) as runtime:
        legacy_key = await new_legacy_key(runtime, "legacy-agent")
        other_key = await new_key(runtime, "other-agent")  # an ordinary key: never sent with its raw value
        client = OriginalProtocolClient(mosquitto, await new_tenant(mosquitto, legacy=True))
        await client.connect()
        try:
            await eventually(lambda: client.is_valid(legacy_key), 10, "the raw legacy key announced as ok")
            client.report_usage(legacy_key, "llm", "gpt-4", 150, {"prompt_tokens": 100})
            client.report_usage(legacy_key, "tts", "eleven-labs", 42, {"text_length": 42})
        finally:
            await client.disconnect()
        assert client.rejected_messages == 0 and other_key not in client.valid_keys
        assert hash_key(other_key) not in str(client.valid_keys)

        def rows() -> list[Any]:
            return list(worker.query("SELECT app_id, module, model, usage FROM usage_events ORDER BY module"))

        got = await eventually(lambda: len(rows()) == 2 and rows(), 30, "two reports in usage_events")
    assert [tuple(r) for r in got] == [("legacy-agent", "llm", "gpt-4", 150),
                                       ("legacy-agent", "tts", "eleven-labs", 42)]
