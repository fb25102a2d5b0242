"""Settings of a stream worker process (pydantic-settings; every field names its variable)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from meterline.clickhouse import default_dsn
from schemas.topics import Topics

__all__ = ["WorkerSettings"]


class WorkerSettings(BaseSettings):
    """One validated settings object per worker; tests build it with keyword arguments."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    #: KAFKA_BOOTSTRAP_SERVERS — the Kafka cluster (host:port[,host:port]).
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    #: CLICKHOUSE_URL — http(s)://user:pass@host:8123/db or chdb:///dir?database=db; unset: chDB under
    #: METERLINE_HOME. Only a worker that writes to ClickHouse opens it.
    clickhouse_url: str | None = None
    #: METERLINE_CLICKHOUSE_CLUSTER — ClickHouse cluster (remote_servers) of CLICKHOUSE_URL's server:
    #: migrations are rendered for it and batches go to the shard-local tables of the shard their
    #: partition maps to (docs/cluster.md). Unset: one server or chDB.
    clickhouse_cluster: str | None = Field(default=None, alias="METERLINE_CLICKHOUSE_CLUSTER")
    #: METERLINE_TOPIC_PREFIX — prefix of every topic name (see schemas.topics).
    topic_prefix: str = Field(default="meterline.", alias="METERLINE_TOPIC_PREFIX")
    #: METERLINE_PARTITIONS — partitions of every topic the workers create or join.
    partitions: int = Field(default=6, ge=1, le=1024, alias="METERLINE_PARTITIONS")
    #: METERLINE_REPLICATION_FACTOR — copies of every topic partition the workers create.
    replication_factor: int = Field(default=1, ge=1, le=16, alias="METERLINE_REPLICATION_FACTOR")
    #: METERLINE_WORKERS — processes ``meterline worker`` starts (1 = one process does everything).
    workers: int = Field(default=1, ge=1, le=64, alias="METERLINE_WORKERS")
    #: METERLINE_WORKER_ID — Faust app id and consumer-group stem; default "<prefix>workers".
    worker_id: str | None = Field(default=None, alias="METERLINE_WORKER_ID")
    #: METERLINE_SINK_MODE — "direct": every worker writes its partitions' batches to ClickHouse (a
    #: ClickHouse server); "topic": workers publish batches to the internal sink topic and the sink
    #: owner writes them (embedded chDB, which one process only may open).
    sink_mode: Literal["direct", "topic"] = Field(default="direct", alias="METERLINE_SINK_MODE")
    #: METERLINE_SINK_OWNER — in "topic" mode, whether this process consumes the sink topic into
    #: ClickHouse (exactly one process with chDB).
    sink_owner: bool = Field(default=True, alias="METERLINE_SINK_OWNER")
    #: METERLINE_PROCESS — whether this process consumes the requests/usage topics at all.
    process: bool = Field(default=True, alias="METERLINE_PROCESS")
    #: METERLINE_SINK_BATCH_SIZE — entries after which a partition's batch is written.
    sink_batch_size: int = Field(default=20_000, ge=1, le=100_000, alias="METERLINE_SINK_BATCH_SIZE")
    #: METERLINE_SINK_BATCH_BYTES — encoded bytes after which a partition's batch is written.
    sink_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024,
                                  alias="METERLINE_SINK_BATCH_BYTES")
    #: METERLINE_SINK_INTERVAL_S — longest time an open batch waits before it is written.
    sink_interval_s: float = Field(default=1.0, gt=0, le=60, alias="METERLINE_SINK_INTERVAL_S")
    #: METERLINE_SINK_NICE — the nice value (0 - 19) of the engine's threads while they run the sink's inserts
    #: (ClickHouse's ``os_thread_priority``): ingest waits in Kafka, a dashboard read waits for the engine, so
    #: where they share cores the reads and the ingest front go first. 0 leaves the inserts at the engine's own.
    sink_nice: int = Field(default=10, ge=0, le=19, alias="METERLINE_SINK_NICE")
    #: METERLINE_SINK_RETRY_MAX_S — ceiling of the exponential backoff while ClickHouse is down.
    sink_retry_max_s: float = Field(default=5.0, gt=0, le=300, alias="METERLINE_SINK_RETRY_MAX_S")
    #: METERLINE_BODY_TTL_DAYS — days request/response bodies and headers are kept.
    body_ttl_days: int = Field(default=30, ge=1, le=3650, alias="METERLINE_BODY_TTL_DAYS")
    #: METERLINE_DEDUPE_WINDOW_S — an (agent, request_id) or (app, report_id) seen again within this
    #: many seconds (Kafka record time) of its first record is a duplicate.
    dedupe_window_s: int = Field(default=3600, ge=1, le=7 * 86400, alias="METERLINE_DEDUPE_WINDOW_S")
    #: METERLINE_DEDUPE_SLICE_S — seconds of partition watermark per slice of the dedupe state. Each
    #: finished slice is written once to the slice files, so a restart loads them and re-reads about one
    #: slice of the log instead of the whole window. At most 60 (offsets in a slice are 16-bit ms).
    dedupe_slice_s: float = Field(default=60.0, gt=0, le=60, alias="METERLINE_DEDUPE_SLICE_S")
    #: METERLINE_DEDUPE_FILES — whether to keep those slice files (off: every new owner of a partition
    #: re-reads the whole window of its log).
    dedupe_files: bool = Field(default=True, alias="METERLINE_DEDUPE_FILES")
    #: METERLINE_DEDUPE_DIR — local directory of the slice files, one subdirectory per consumer group and
    #: partition, about one window of each partition's keys at 18 bytes each; default METERLINE_HOME/dedupe.
    dedupe_dir: str | None = Field(default=None, alias="METERLINE_DEDUPE_DIR")
    #: METERLINE_MAX_EVENT_AGE_DAYS — client times older than this are replaced by ingested_at.
    max_event_age_days: int = Field(default=30, ge=1, le=3650, alias="METERLINE_MAX_EVENT_AGE_DAYS")
    #: METERLINE_SESSION_TIMEOUT_S — Kafka consumer session timeout: how soon a dead worker's
    #: partitions move to the others.
    session_timeout_s: float = Field(default=10.0, ge=1, le=300, alias="METERLINE_SESSION_TIMEOUT_S")
    #: METERLINE_WORKER_WEB_PORT — Faust web server port (/metrics); 0 disables it.
    web_port: int = Field(default=6066, ge=0, le=65535, alias="METERLINE_WORKER_WEB_PORT")

    @property
    def topics(self) -> Topics:
        return Topics(prefix=self.topic_prefix, partitions=self.partitions,
                      replication_factor=self.replication_factor)

    @property
    def app_id(self) -> str:
        return self.worker_id or f"{self.topic_prefix}workers"

    @property
    def sink_topic(self) -> str:
        """Internal topic of encoded sink batches ("topic" mode)."""
        return f"{self.topic_prefix}sink-batches"

    def effective_clickhouse_url(self) -> str:
        return self.clickhouse_url or default_dsn()

    @property
    def writes_clickhouse(self) -> bool:
        return self.sink_mode == "direct" and self.process or self.sink_mode == "topic" and self.sink_owner
