"""``GatewayRuntime``: the resources one gateway process owns, started and stopped together.

``create_app`` drives it from the ASGI lifespan (uvicorn, and ``faust.contrib.asgi.serve_asgi``,
which runs uvicorn with ``lifespan="on"``); a host that cannot run the lifespan may call
``await runtime.start()`` / ``await runtime.stop()`` itself.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from gateway.keys.registry import KeyRegistry
from gateway.metrics import GatewayMetrics
from gateway.producer import EventProducer
from gateway.ratelimit import TokenBuckets
from gateway.settings import GatewaySettings
from meterline.kafka_admin import create_topics

if TYPE_CHECKING:
    from gateway.bridge.mqtt import MqttBridge

log = logging.getLogger(__name__)


class GatewayRuntime:
    """Kafka producer, key registry, rate limiter, metrics and (optionally) the MQTT bridge."""

    def __init__(self, settings: GatewaySettings | None = None) -> None:
        self.settings = settings or GatewaySettings()
        s = self.settings
        self.topics = s.topics
        self.metrics = GatewayMetrics()
        self.producer = EventProducer(s.kafka_bootstrap_servers, timeout=s.produce_timeout, metrics=self.metrics,
                                      linger_ms=s.linger_ms, max_inflight=s.max_inflight)
        self.registry = KeyRegistry(s.kafka_bootstrap_servers, self.topics.keys, metrics=self.metrics)
        self.limiter = TokenBuckets(s.rate_limit, s.rate_burst)
        #: agent id -> epoch seconds of its last ``sdk_ping`` (connection status, this replica).
        self.connections: dict[str, float] = {}
        self.bridge: MqttBridge | None = None
        self.started = False

    async def start(self) -> None:
        s = self.settings
        if s.create_topics:
            created = await create_topics(s.kafka_bootstrap_servers, self.topics)
            if created:
                log.info("created topics %s", ", ".join(created))
        await self.producer.start()
        try:
            await self.registry.start(s.registry_timeout)
            if s.bridge:
                from gateway.bridge.mqtt import MqttBridge

                self.bridge = MqttBridge.from_settings(s, producer=self.producer, registry=self.registry,
                                                       metrics=self.metrics)
                await self.bridge.start()
        except BaseException:
            await self.registry.stop()
            await self.producer.stop(0)
            raise
        self.started = True
        log.info("gateway runtime started (kafka %s, topics %s*, bridge %s)", s.kafka_bootstrap_servers,
                 self.topics.prefix, "on" if self.bridge else "off")

    async def stop(self) -> None:
        """Stop the bridge, drain in-flight produces, close the registry."""
        if self.bridge is not None:
            await self.bridge.stop()
            self.bridge = None
        await self.producer.stop(self.settings.drain_timeout)
        await self.registry.stop()
        self.started = False
        log.info("gateway runtime stopped")

    def mark_connected(self, agent_id: str) -> None:
        self.connections[agent_id] = time.time()

    async def __aenter__(self) -> GatewayRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


__all__ = ["GatewayRuntime"]
