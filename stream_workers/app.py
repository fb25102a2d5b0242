"""The Faust app of the stream workers and the service that runs the pipeline inside it.

``create_app(settings)`` returns a ``faust.App``; run it with ``python -m stream_workers worker`` or
``meterline worker``, or embed it: the local stack serves the gateway from the same process with
``faust.contrib.asgi.serve_asgi(app, gateway_app)``, so one process owns the embedded chDB.

Inside, ``WorkerService`` (a ``mode.Service`` started with the app) runs plain aiokafka consumers
with manual commits — see ``processor`` for why not Faust streams — and, depending on the settings:

* ``METERLINE_SINK_MODE=direct``: the processor writes its batches to ClickHouse itself. With a
  ClickHouse server every worker does so for the partitions it owns; this is also the single-process
  embedded mode.
* ``METERLINE_SINK_MODE=topic``: processors publish batches to ``<prefix>sink-batches`` and the one
  process with ``METERLINE_SINK_OWNER=1`` (the owner of chDB) writes them. This lets several worker
  processes share the partitions while a single process opens the embedded engine.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from mode import Service

from meterline import heap
from meterline.clickhouse import get_client
from meterline.kafka_admin import create_topics
from meterline.paths import data_home
from meterline.shards import ShardRouter
from schemas.topics import TopicSpec
from stream_workers.alerts.service import AlertService, alert_service
from stream_workers.processor import Processor
from stream_workers.settings import WorkerSettings
from stream_workers.sink import BatchWriter, ClickHouseSink, TopicSink
from stream_workers.sink_consumer import SinkConsumer

__all__ = ["WorkerApp", "WorkerService", "create_app", "sink_topic_spec"]

log = logging.getLogger(__name__)


def sink_topic_spec(settings: WorkerSettings) -> TopicSpec:
    return TopicSpec(settings.sink_topic, settings.partitions,
                     {"cleanup.policy": "delete", "retention.ms": str(3 * 24 * 3600 * 1000),
                      "max.message.bytes": str(64 * 1024 * 1024)})


class WorkerService(Service):
    """Starts and stops the producer, ClickHouse sink, processor and sink consumer in order."""

    settings: WorkerSettings

    def __init__(self, settings: WorkerSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.clickhouse: ClickHouseSink | None = None
        self.processor: Processor | None = None
        self.sink_consumer: SinkConsumer | None = None
        self.alerts: AlertService | None = None

    async def on_start(self) -> None:
        s = self.settings
        await create_topics(s.kafka_bootstrap_servers, s.topics, extra=[sink_topic_spec(s)])
        self.producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers, acks="all",
                                         enable_idempotence=True, max_request_size=64 * 1024 * 1024,
                                         linger_ms=5)
        await self.producer.start()
        if s.writes_clickhouse:
            url = s.effective_clickhouse_url()
            router = ShardRouter(s.clickhouse_cluster, url) if s.clickhouse_cluster else None
            self.clickhouse = ClickHouseSink(lambda: get_client(url), body_ttl_days=s.body_ttl_days,
                                             retry_max_s=s.sink_retry_max_s, router=router, nice=s.sink_nice)
            await self.clickhouse.start()
        if s.sink_mode == "topic" and s.sink_owner and self.clickhouse is not None:
            self.sink_consumer = SinkConsumer(s, self.clickhouse)
            self.clickhouse.on_outage = self.sink_consumer.set_paused
            await self.sink_consumer.start()
        if s.process:
            writer: BatchWriter
            if self.clickhouse is not None and s.sink_mode == "direct":
                writer = self.clickhouse
            else:
                writer = TopicSink(self.producer, s.sink_topic, s.sink_retry_max_s)
            self.processor = Processor(s, writer, self.producer)
            self.processor.on_fatal = self._fatal
            if s.sink_mode == "direct" and self.clickhouse is not None:
                self.clickhouse.on_outage = self.processor.set_paused
            await self.processor.start()
        self.alerts = alert_service(s)  # the alert evaluator (docs/alerts.md): where ClickHouse is written
        if self.alerts is not None:
            await self.alerts.start()
        heap.settle()  # start-up's objects out of the collector's reach (meterline/heap.py says why)
        log.info("stream worker %s started (mode %s, process=%s, writes ClickHouse=%s)",
                 s.app_id, s.sink_mode, s.process, s.writes_clickhouse)

    def _fatal(self, exc: BaseException) -> None:
        """A bug killed the processing loop: stop the whole process (SIGTERM: flush, commit, exit)."""
        log.critical("stream worker stops after an unexpected error: %r", exc)
        os.kill(os.getpid(), signal.SIGTERM)

    async def on_stop(self) -> None:
        if self.alerts is not None:
            await self.alerts.stop()
        if self.processor is not None:
            await self.processor.stop()
        if self.sink_consumer is not None:
            await self.sink_consumer.stop()
        if self.producer is not None:
            await self.producer.stop()
        if self.clickhouse is not None:
            await self.clickhouse.close()
        log.info("stream worker %s stopped", self.settings.app_id)


class WorkerApp(faust.App):
    """The stream workers' Faust app; ``meterline_settings`` are the settings it was built with."""

    meterline_settings: WorkerSettings


def create_app(settings: WorkerSettings | None = None) -> WorkerApp:
    """The worker's Faust app, running one ``WorkerService`` with ``settings``."""
    settings = settings or WorkerSettings()
    datadir = data_home() / "faust"
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = WorkerApp(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
        autodiscover=False,
        store="memory://",
        # Faust keeps table state in a data directory (default: "<app id>-data" in the working
        # directory); we keep no Faust tables, but it is created anyway: put it under METERLINE_HOME.
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.1, settings.session_timeout_s / 4),
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind="127.0.0.1",
    )
    app.meterline_settings = settings

    @app.service
    class AppWorkerService(WorkerService):
        """``WorkerService`` with this app's settings: Faust creates it with only a loop and a beacon."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(app.meterline_settings, **kwargs)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app
