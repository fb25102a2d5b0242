"""One ``/metrics`` for the embedded stack: the gateway renders the registries it was asked to include."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import REGISTRY, CollectorRegistry, Counter

import stream_workers.metrics  # noqa: F401 - registers the worker's series on the default registry
from gateway.metrics import GatewayMetrics


def _families(text: str) -> list[str]:
    return [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]


def test_the_standalone_gateway_renders_only_its_own_series() -> None:
    families = _families(GatewayMetrics().render().decode())
    assert families and all(f.startswith(("meterline_gateway_", "meterline_bridge_")) for f in families)
    assert "meterline_bridge_mqtt_messages_total" in families


def test_an_included_registry_is_rendered_once() -> None:
    other = CollectorRegistry()
    Counter("meterline_worker_example", "an included series", registry=other).inc(3)
    metrics = GatewayMetrics()
    metrics.include(other)
    metrics.include(other)
    metrics.include(metrics.registry)
    text = metrics.render().decode()
    assert "meterline_worker_example_total 3.0" in text
    assert [f for f, n in Tally(_families(text)).items() if n > 1] == []


def test_the_stack_scrape_has_the_worker_series() -> None:
    metrics = GatewayMetrics()
    metrics.include(REGISTRY)
    families = set(_families(metrics.render().decode()))
    assert {"meterline_gateway_requests_total", "meterline_bridge_mqtt_messages_total",
            "meterline_worker_consumer_lag",
            "meterline_worker_dedupe_hits_total", "meterline_worker_sink_batch_rows",
            "meterline_worker_sink_write_seconds", "meterline_worker_ingest_to_stored_seconds"} <= families
