"""``meterline infra``, ``fetch-kafka``, ``migrate``, ``create-topics``: the local infrastructure."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

from meterline.clickhouse import get_client
from meterline.kafka_admin import create_topics
from meterline.local.kafka import LocalKafka, ensure_kafka_classpath
from meterline.local.mosquitto import LocalMosquitto
from meterline.local.shutdown import BoundedStop
from meterline.local.supervisor import Service, Supervisor
from meterline.migrations import apply_migrations
from meterline.paths import data_home
from meterline.settings import StackSettings


def register(sub: Any) -> None:
    p = sub.add_parser("infra", help="start local Kafka + Mosquitto, create topics, apply migrations; Ctrl-C stops")
    p.set_defaults(func=cmd_infra)
    p = sub.add_parser("fetch-kafka", help="resolve the Apache Kafka classpath from Maven Central into the cache")
    p.set_defaults(func=cmd_fetch_kafka)
    p = sub.add_parser("migrate", help="apply ClickHouse migrations to CLICKHOUSE_URL (default: embedded chDB)")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("create-topics", help="create Meterline's Kafka topics on KAFKA_BOOTSTRAP_SERVERS")
    p.set_defaults(func=cmd_create_topics)


def cmd_fetch_kafka(args: argparse.Namespace) -> int:
    print(f"Kafka classpath: {ensure_kafka_classpath()}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = StackSettings()
    client = get_client(settings.effective_clickhouse_url())
    applied = apply_migrations(client, cluster=settings.clickhouse_cluster)
    print(f"ClickHouse database {client.database}: applied {applied or 'nothing (up to date)'}")
    return 0


def cmd_create_topics(args: argparse.Namespace) -> int:
    settings = StackSettings()
    if not settings.kafka_bootstrap_servers:
        print("KAFKA_BOOTSTRAP_SERVERS is not set")
        return 2
    created = asyncio.run(create_topics(settings.kafka_bootstrap_servers, settings.topics))
    print(f"created topics: {created or 'none (all exist)'}")
    return 0


class LocalInfra:
    """Kafka and Mosquitto for the local stack, started unless the environment names running ones."""

    def __init__(self, settings: StackSettings, extra_mqtt_users: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.extra_mqtt_users = dict(extra_mqtt_users or {})
        self.kafka: LocalKafka | None = None
        self.mosquitto: LocalMosquitto | None = None

    def start(self) -> None:
        home = data_home()
        if not self.settings.kafka_bootstrap_servers:
            self.kafka = LocalKafka(home / "kafka", port=self.settings.meterline_kafka_port,
                                    controller_port=self.settings.meterline_kafka_controller_port).start()
        if not self.settings.mqtt_url:
            try:
                self.mosquitto = LocalMosquitto(home / "mosquitto", port=self.settings.meterline_mqtt_port,
                                                tls_port=self.settings.meterline_mqtt_tls_port,
                                                extra_users=self.extra_mqtt_users).start()
            except BaseException:
                self.stop()
                raise

    def supervise(self, on_give_up: Callable[[str], None]) -> Supervisor:
        """Start a supervisor that restarts the local Kafka and Mosquitto if they exit."""
        services: dict[str, Service] = {}
        if self.kafka is not None:
            services["Kafka"] = self.kafka
        if self.mosquitto is not None:
            services["Mosquitto"] = self.mosquitto
        return Supervisor(services, on_give_up=on_give_up).start()

    @property
    def bootstrap_servers(self) -> str:
        if self.kafka is not None:
            return self.kafka.bootstrap_servers
        return self.settings.kafka_bootstrap_servers or ""

    def stop(self) -> None:
        if self.mosquitto is not None:
            self.mosquitto.stop()
        if self.kafka is not None:
            self.kafka.stop()


def cmd_infra(args: argparse.Namespace) -> int:
    settings = StackSettings()
    stop = BoundedStop()
    stop.install_signal_handlers()
    infra = LocalInfra(settings)
    supervisor: Supervisor | None = None
    try:
        infra.start()
        supervisor = infra.supervise(on_give_up=lambda _: os.kill(os.getpid(), signal.SIGTERM))
        stop.on_request.append(lambda: supervisor.stop(0) if supervisor else None)
        created = asyncio.run(create_topics(infra.bootstrap_servers, settings.topics))
        client = get_client(settings.effective_clickhouse_url())
        applied = apply_migrations(client)
        print(f"Kafka       {infra.bootstrap_servers}  (topics created: {len(created)})")
        if infra.mosquitto is not None:
            ep = infra.mosquitto.endpoint
            print(f"MQTT        mqtt://{ep.host}:{ep.port}  mqtts://{ep.host}:{ep.tls_port}  "
                  f"user {ep.username}  CA {ep.ca_file}")
        print(f"ClickHouse  {settings.effective_clickhouse_url()}  (migrations applied: {applied or 'none'})")
        print("ready — Ctrl-C stops", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        stop.arm()
        if supervisor is not None:
            supervisor.stop()
        infra.stop()
    return 1 if supervisor is not None and supervisor.gave_up else 0
