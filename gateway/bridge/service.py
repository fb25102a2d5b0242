"""The bridge as its own process: producer + key registry + ``MqttBridge`` until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from gateway.bridge.mqtt import MqttBridge
from gateway.keys.registry import KeyRegistry
from gateway.logs import configure
from gateway.metrics import GatewayMetrics
from gateway.producer import EventProducer
from gateway.settings import GatewaySettings
from meterline.kafka_admin import create_topics

log = logging.getLogger(__name__)


async def run_bridge(settings: GatewaySettings, stop: asyncio.Event) -> None:
    """Run one bridge replica until ``stop`` is set; drains in-flight reports on the way out."""
    metrics = GatewayMetrics()
    topics = settings.topics
    if settings.create_topics:
        await create_topics(settings.kafka_bootstrap_servers, topics)
    producer = EventProducer(settings.kafka_bootstrap_servers, timeout=settings.produce_timeout, metrics=metrics,
                             linger_ms=settings.linger_ms, max_inflight=settings.max_inflight,
                             client_id="meterline-bridge")
    registry = KeyRegistry(settings.kafka_bootstrap_servers, topics.keys, metrics=metrics)
    await producer.start()
    try:
        await registry.start(settings.registry_timeout)
        bridge = MqttBridge.from_settings(settings, producer=producer, registry=registry, metrics=metrics)
        await bridge.start()
        host, port, *_ = settings.mqtt_parts()  # never log MQTT_URL itself: it holds the password
        log.info("bridge %s running (mqtt %s:%d, kafka %s)", settings.bridge_client_id, host, port,
                 settings.kafka_bootstrap_servers)
        await stop.wait()
        await bridge.stop(settings.drain_timeout)
    finally:
        await producer.stop(settings.drain_timeout)
        await registry.stop()


def main() -> int:
    configure()
    settings = GatewaySettings()

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_bridge(settings, stop)

    asyncio.run(_main())
    return 0


__all__ = ["main", "run_bridge"]
