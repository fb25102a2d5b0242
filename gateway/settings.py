"""``GatewaySettings``: every knob of the gateway and its MQTT bridge, read from the environment.

Each field documents its environment variable. Variables shared with the rest of Meterline keep
their shared names (``KAFKA_BOOTSTRAP_SERVERS``, ``MQTT_URL``, ``METERLINE_TOPIC_PREFIX``, ...);
gateway-only ones start with ``METERLINE_GATEWAY_`` or ``METERLINE_BRIDGE_``.
"""

from __future__ import annotations

import socket
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.events import BODY_LIMIT, MAX_ENTRIES_PER_BATCH
from schemas.topics import Topics


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class GatewaySettings(BaseSettings):
    """Settings of one gateway process (HTTP ingest, key registry, optional MQTT bridge)."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_GATEWAY_", extra="ignore", populate_by_name=True)

    # --- where things are -------------------------------------------------------------------------
    #: KAFKA_BOOTSTRAP_SERVERS — the Kafka cluster (default: the local broker of `meterline infra`).
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:19092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS",
                                                                                   "kafka_bootstrap_servers"))
    #: METERLINE_TOPIC_PREFIX — prefix of every topic name (the same variable as the other services read).
    topic_prefix: str = Field(default="meterline.", validation_alias=_env("METERLINE_TOPIC_PREFIX", "topic_prefix"))
    #: METERLINE_PARTITIONS — partitions of the data topics when the gateway creates them.
    partitions: int = Field(default=6, ge=1, validation_alias=_env("METERLINE_PARTITIONS", "partitions"))
    #: METERLINE_REPLICATION_FACTOR — copies of every topic partition when the gateway creates them.
    replication_factor: int = Field(default=1, ge=1, le=16, validation_alias=_env("METERLINE_REPLICATION_FACTOR",
                                                                                  "replication_factor"))
    #: METERLINE_GATEWAY_CREATE_TOPICS — create missing topics at start-up (idempotent).
    create_topics: bool = True
    #: CLICKHOUSE_URL — http(s)://user:pass@host:8123/db or chdb:///dir the read API and the dashboard
    #: page read (opened on the first read); unset: a write-only gateway, without them.
    clickhouse_url: str | None = Field(default=None, validation_alias=_env("CLICKHOUSE_URL", "clickhouse_url"))
    #: METERLINE_GATEWAY_HOST / METERLINE_GATEWAY_PORT — where `meterline gateway` listens.
    host: str = "127.0.0.1"
    port: int = Field(default=9092, validation_alias=_env("METERLINE_GATEWAY_PORT", "port"))

    # --- ingest limits ----------------------------------------------------------------------------
    #: METERLINE_GATEWAY_MAX_BODY_BYTES — request body limit, checked on the wire and after gzip
    #: decompression (413 above it). 8 MiB fits 1000 entries or 50 entries with two 16 KiB bodies
    #: each many times over (the upstream 50 KB cap made the SDK retry a 413 forever).
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    #: METERLINE_GATEWAY_MAX_ENTRIES — entries per batch (413 above it; the SDK splits).
    max_entries: int = Field(default=MAX_ENTRIES_PER_BATCH, ge=1, le=10_000)
    #: METERLINE_GATEWAY_BODY_LIMIT — bytes kept of request/response bodies (longer ones are cut).
    body_limit: int = Field(default=BODY_LIMIT, ge=0)
    #: METERLINE_GATEWAY_RECORD_GRANULARITY — one Kafka record per ingest batch ("batch", measured
    #: faster: see bench/bench_gateway.py) or per entry ("entry").
    record_granularity: Literal["batch", "entry"] = "batch"
    #: METERLINE_GATEWAY_RECORD_MAX_BYTES — a batch record larger than this is split in several.
    record_max_bytes: int = Field(default=900 * 1024, ge=64 * 1024)

    # --- OpenTelemetry ingest (POST /v1/traces, docs/otlp.md) ------------------------------------
    #: METERLINE_GATEWAY_OTLP_CUSTOMER_ATTRIBUTES — comma-separated span/resource attributes naming the end
    #: customer of a request or of GenAI usage; the first one present wins (span before resource).
    otlp_customer_attributes: str = "meterline.customer_id,enduser.id,user.id"
    #: METERLINE_GATEWAY_OTLP_MAX_SPANS — spans per export (413 above it; OpenTelemetry SDKs send 512).
    otlp_max_spans: int = Field(default=10_000, ge=1, le=1_000_000)

    # --- Kafka produce ----------------------------------------------------------------------------
    #: METERLINE_GATEWAY_PRODUCE_TIMEOUT — seconds an ingest call waits for Kafka's ack before 503.
    produce_timeout: float = Field(default=5.0, gt=0, le=120)
    #: METERLINE_GATEWAY_RETRY_AFTER — seconds announced in Retry-After with a 503.
    retry_after: int = Field(default=2, ge=1)
    #: METERLINE_GATEWAY_LINGER_MS — producer linger (batching of concurrent ingest calls).
    linger_ms: int = Field(default=2, ge=0, le=1000)
    #: METERLINE_GATEWAY_MAX_INFLIGHT — concurrent ingest calls waiting on Kafka before 503.
    max_inflight: int = Field(default=2000, ge=1)
    #: METERLINE_GATEWAY_DRAIN_TIMEOUT — seconds shutdown waits for in-flight produces.
    drain_timeout: float = Field(default=15.0, ge=0)

    # --- rate limit -------------------------------------------------------------------------------
    #: METERLINE_GATEWAY_RATE_LIMIT — ingest calls per second per API key (token bucket refill).
    rate_limit: float = Field(default=200.0, gt=0)
    #: METERLINE_GATEWAY_RATE_BURST — bucket size (calls a key may make at once).
    rate_burst: int = Field(default=400, ge=1)

    # --- auth -------------------------------------------------------------------------------------
    #: METERLINE_OPERATOR_TOKEN — operator token for the read API (compared in constant time);
    #: unset disables operator access.
    operator_token: SecretStr | None = Field(default=None, validation_alias=_env("METERLINE_OPERATOR_TOKEN",
                                                                          "operator_token"))
    #: METERLINE_GATEWAY_REGISTRY_TIMEOUT — seconds start-up waits to load the key registry.
    registry_timeout: float = Field(default=30.0, gt=0)

    # --- MQTT bridge ------------------------------------------------------------------------------
    #: METERLINE_GATEWAY_BRIDGE — run the MQTT bridge inside the gateway process.
    bridge: bool = False
    #: MQTT_URL — mqtt://user:pass@host:1883 or mqtts://user:pass@host:8883 of the broker.
    mqtt_url: str | None = Field(default=None, validation_alias=_env("MQTT_URL", "mqtt_url"))
    #: MQTT_CA_FILE — CA certificate that signed the broker's certificate (mqtts).
    mqtt_ca_file: str | None = Field(default=None, validation_alias=_env("MQTT_CA_FILE", "mqtt_ca_file"))
    #: METERLINE_BRIDGE_CLIENT_ID — stable client id of this bridge replica (persistent session;
    #: Mosquitto round-robins shared subscriptions over offline members too, so keep it stable).
    bridge_client_id: str = Field(default_factory=lambda: f"meterline-bridge-{socket.gethostname()}",
                                  validation_alias=_env("METERLINE_BRIDGE_CLIENT_ID", "bridge_client_id"))
    #: METERLINE_BRIDGE_SHARE_GROUP — shared-subscription group the replicas split the load in.
    bridge_share_group: str = Field(default="meterline", validation_alias=_env("METERLINE_BRIDGE_SHARE_GROUP",
                                                                        "bridge_share_group"))
    #: METERLINE_KEY_SECRET — server secret (32+ characters; several comma-separated to rotate, the
    #: first encrypts) that keeps the raw value of legacy MQTT keys encrypted in the keys topic
    #: (`meterline keys create --legacy-mqtt`); the bridge needs it to announce them. Unset: the local
    #: stack's $METERLINE_HOME/key-secret, which `meterline up` makes.
    key_secret: SecretStr | None = Field(default=None, validation_alias=_env("METERLINE_KEY_SECRET", "key_secret"))
    #: MQTT_ADMIN_URL — mqtt(s)://meterline-admin:pass@host:port of the broker's service listener, for
    #: `meterline mqtt-login` (tenant logins). Unset: the local stack's broker and admin password.
    mqtt_admin_url: SecretStr | None = Field(default=None, validation_alias=_env("MQTT_ADMIN_URL", "mqtt_admin_url"))
    #: METERLINE_BRIDGE_MAX_PAYLOAD — largest MQTT payload accepted (bigger → dead letter).
    bridge_max_payload: int = Field(default=64 * 1024, ge=1024, validation_alias=_env("METERLINE_BRIDGE_MAX_PAYLOAD",
                                                                              "bridge_max_payload"))
    #: METERLINE_BRIDGE_RECEIVE_MAXIMUM — reports the broker may have sent the bridge unacknowledged (the
    #: MQTT 5 receive maximum of its CONNECT); a report is acknowledged after Kafka's ack, so this over
    #: Kafka's ack latency bounds one bridge's rate (Mosquitto's max_inflight_messages does not apply).
    bridge_receive_maximum: int = Field(default=2000, ge=1, le=65535,
                                        validation_alias=_env("METERLINE_BRIDGE_RECEIVE_MAXIMUM",
                                                              "bridge_receive_maximum"))

    @property
    def topics(self) -> Topics:
        return Topics(prefix=self.topic_prefix, partitions=self.partitions,
                      replication_factor=self.replication_factor)

    def mqtt_parts(self) -> tuple[str, int, str | None, str | None, bool]:
        """(host, port, username, password, tls) from ``MQTT_URL``."""
        url = urlsplit(self.mqtt_url or "mqtt://127.0.0.1:1883")
        tls = url.scheme in ("mqtts", "ssl", "tls")
        return (url.hostname or "127.0.0.1", url.port or (8883 if tls else 1883), url.username, url.password,
                tls)


__all__ = ["GatewaySettings"]
