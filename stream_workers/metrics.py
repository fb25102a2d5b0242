"""Prometheus metrics of the stream workers (served on the Faust web port at ``/metrics``)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCHES_WRITTEN",
    "CLAMPED",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "DEDUPE_HITS",
    "EVENTS_IN",
    "EVENTS_OUT",
    "INGEST_TO_STORED",
    "PAUSED",
    "SINK_BATCH_ROWS",
    "SINK_LATENCY",
    "SINK_RETRIES",
]

EVENTS_IN: Final = Counter(
    "meterline_worker_events_in_total", "Entries and reports read from Kafka (replays included)", ["kind"])
EVENTS_OUT: Final = Counter(
    "meterline_worker_events_out_total", "Deduplicated rows handed to the sink", ["kind"])
DEDUPE_HITS: Final = Counter(
    "meterline_worker_dedupe_hits_total", "Duplicates dropped before aggregation", ["kind"])
DEAD_LETTERS: Final = Counter(
    "meterline_worker_dead_letters_total", "Inputs sent to the dead-letter topic", ["reason"])
CLAMPED: Final = Counter(
    "meterline_worker_clamped_times_total", "Client times replaced by ingested_at", ["why"])
SINK_BATCH_ROWS: Final = Histogram(
    "meterline_worker_sink_batch_rows", "Rows per sink batch", ["table"],
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000))
SINK_LATENCY: Final = Histogram(
    "meterline_worker_sink_write_seconds", "Time to write one sink batch (all its tables)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SINK_RETRIES: Final = Counter(
    "meterline_worker_sink_retries_total", "Failed sink writes that are being retried", ["target"])
BATCHES_WRITTEN: Final = Counter(
    "meterline_worker_sink_batches_total", "Sink batches written", ["target"])
INGEST_TO_STORED: Final = Histogram(
    "meterline_worker_ingest_to_stored_seconds", "Kafka append of a record to its rows being stored",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
CONSUMER_LAG: Final = Gauge(
    "meterline_worker_consumer_lag", "Records behind the partition end", ["topic", "partition"])
PAUSED: Final = Gauge(
    "meterline_worker_consumption_paused", "1 while consumption is paused because the sink is down")
