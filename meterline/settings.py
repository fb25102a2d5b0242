"""Settings of the local/embedded stack, read from the environment (pydantic-settings).

The ``meterline`` command reads them (``meterline up``, ``infra``, ``migrate``, ``create-topics``,
the dashboards' shell commands); each service has its own settings object beside its code.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from meterline.clickhouse import default_dsn
from schemas.topics import Topics


class StackSettings(BaseSettings):
    """Where the services are. Unset URLs mean "start the local, embedded one"."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    #: KAFKA_BOOTSTRAP_SERVERS — an existing Kafka cluster; unset starts the local broker.
    kafka_bootstrap_servers: str | None = None
    #: MQTT_URL — mqtt://user:pass@host:1883 of an existing broker; unset starts local Mosquitto.
    mqtt_url: str | None = None
    #: CLICKHOUSE_URL — http(s)://user:pass@host:8123/db or chdb:///dir; unset uses chDB under METERLINE_HOME.
    clickhouse_url: str | None = None
    #: METERLINE_TOPIC_PREFIX — prefix of every Kafka topic name (tests use fresh prefixes).
    topic_prefix: str = Field(default="meterline.", alias="METERLINE_TOPIC_PREFIX")
    #: METERLINE_PARTITIONS — partitions of the requests, usage and dead-letter topics.
    partitions: int = Field(default=6, ge=1, alias="METERLINE_PARTITIONS")
    #: METERLINE_REPLICATION_FACTOR — copies of every topic partition (3 on a 3-broker cluster:
    #: deploy/cluster/); min.insync.replicas is one less (at least 1).
    replication_factor: int = Field(default=1, ge=1, le=16, alias="METERLINE_REPLICATION_FACTOR")
    #: METERLINE_CLICKHOUSE_CLUSTER — name of the ClickHouse cluster (remote_servers) that `meterline
    #: migrate` renders the migrations for: Replicated*MergeTree tables, Distributed tables, ON CLUSTER
    #: (docs/cluster.md). Unset: one server or chDB, the migrations as written.
    clickhouse_cluster: str | None = Field(default=None, alias="METERLINE_CLICKHOUSE_CLUSTER")
    #: METERLINE_KAFKA_PORT / METERLINE_KAFKA_CONTROLLER_PORT — ports of the local broker.
    meterline_kafka_port: int = 19092
    meterline_kafka_controller_port: int = 19093
    #: METERLINE_MQTT_PORT / METERLINE_MQTT_TLS_PORT — ports of the local Mosquitto.
    meterline_mqtt_port: int = 1883
    meterline_mqtt_tls_port: int = 8883
    #: METERLINE_GATEWAY_PORT — HTTP port of the gateway (ingest, dashboards).
    meterline_gateway_port: int = Field(default=9092)
    #: METERLINE_FRONT — ``meterline up`` serves ingest from a process of its own (the ingest front,
    #: ``gateway/front.py``) on the gateway port; ``0`` serves everything from the one stack process.
    meterline_front: bool = True

    @property
    def topics(self) -> Topics:
        return Topics(prefix=self.topic_prefix, partitions=self.partitions,
                      replication_factor=self.replication_factor)

    def effective_clickhouse_url(self) -> str:
        return self.clickhouse_url or default_dsn()
