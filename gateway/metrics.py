"""Prometheus metrics of one gateway runtime (its own registry, so several apps can live in a process).

A process that embeds other components (``meterline up`` runs the stream worker beside the gateway)
adds their registries with ``include(registry)``: one scrape of ``/metrics`` then shows all of them.
The standalone gateway includes nothing, so it shows only its own series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """Counters and histograms exported on ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("meterline_gateway_requests", "Ingest calls by HTTP status",
                                ["status"], registry=r)
        self.entries = Counter("meterline_gateway_entries", "Ingest entries by outcome and reason",
                               ["outcome", "reason"], registry=r)
        self.sdk_pings = Counter("meterline_gateway_sdk_pings", "sdk_ping entries (not traffic)", registry=r)
        self.auth_failures = Counter("meterline_gateway_auth_failures", "Refused credentials by reason",
                                     ["reason"], registry=r)
        self.produce_seconds = Histogram("meterline_gateway_kafka_produce_seconds",
                                         "Time from produce to Kafka acknowledgement", ["topic"],
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.produce_failures = Counter("meterline_gateway_kafka_produce_failures",
                                        "Produces not acknowledged in time", ["topic"], registry=r)
        self.inflight = Gauge("meterline_gateway_inflight_produces", "Ingest calls waiting on Kafka",
                              registry=r)
        self.mqtt_messages = Counter("meterline_bridge_mqtt_messages", "MQTT messages handled by the bridge",
                                     ["topic", "outcome"], registry=r)
        self.keys_loaded = Gauge("meterline_gateway_api_keys", "API keys known to the registry", ["status"],
                                 registry=r)

        self._included: list[CollectorRegistry] = []

    def include(self, registry: CollectorRegistry) -> None:
        """Also render ``registry`` (another component's series; names must not overlap ours)."""
        if registry is not self.registry and all(registry is not r for r in self._included):
            self._included.append(registry)

    def render(self) -> bytes:
        return b"".join(generate_latest(r) for r in (self.registry, *self._included))


__all__ = ["GatewayMetrics"]
