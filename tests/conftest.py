"""Shared fixtures: real Kafka, Mosquitto and ClickHouse for the whole test session.

Each service is chosen in this order:
1. an environment variable pointing at a running service
   (``KAFKA_BOOTSTRAP_SERVERS``, ``MQTT_URL`` + ``MQTT_CA_FILE``, ``CLICKHOUSE_URL``);
2. testcontainers, when a Docker daemon answers;
3. local processes: Apache Kafka from Maven Central, Debian's Mosquitto, the embedded chDB engine.

Tests get fresh names (topic prefix, ClickHouse database) so they never see each other's data.
Markers (unit / integration / e2e) come from the folder a test lives in.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from meterline.kafka_admin import create_topics
from meterline.local.kafka import LocalKafka
from meterline.local.mosquitto import LocalMosquitto, MqttEndpoint, MqttLogin
from meterline.local.ports import free_port
from schemas.topics import Topics
from tests.mqtt import new_tenant

_TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


def _docker_available() -> bool:
    if os.environ.get("METERLINE_NO_DOCKER") or shutil.which("docker") is None:
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no daemon"
        return False


@pytest.fixture(scope="session")
def session_tmp() -> Iterator[Path]:
    # Not pytest's tmp_path_factory: its directories are 0700 under /tmp/pytest-of-<user>.
    path = Path(tempfile.mkdtemp(prefix="meterline-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(session_tmp: Path) -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker shared by the session."""
    if env := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield env
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    broker = LocalKafka(session_tmp / "kafka", port=free_port(), controller_port=free_port())
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def kafka_process(tmp_dir: Path) -> Iterator[LocalKafka]:
    """A broker of the test's own, for tests that stop, kill and restart Kafka."""
    broker = LocalKafka(tmp_dir / "kafka", port=free_port(), controller_port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="meterline-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    """A fresh, created topic set (unique prefix) for one test."""
    topic_set = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.", partitions=3)
    asyncio.run(create_topics(kafka_bootstrap, topic_set))
    return topic_set


@pytest.fixture(scope="session")
def mosquitto_broker(session_tmp: Path) -> Iterator[LocalMosquitto | None]:
    """The session's local Mosquitto process (None when an external broker is used)."""
    if os.environ.get("MQTT_URL"):
        yield None
        return
    broker = LocalMosquitto(session_tmp / "mosquitto", port=free_port(), tls_port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mosquitto(mosquitto_broker: LocalMosquitto | None) -> MqttEndpoint:
    """Where to reach a real MQTT broker: the services' ``port`` (``username`` is the bridge's login) and the
    tenants' TLS ``tls_port``. An external broker (``MQTT_URL`` with the bridge's login) must run Meterline's
    access rules; ``MQTT_ADMIN_PASSWORD`` lets the tests make tenant logins on it."""
    return mosquitto_broker.endpoint if mosquitto_broker is not None else _endpoint_from_env()


def _endpoint_from_env() -> MqttEndpoint:
    url = urlsplit(os.environ["MQTT_URL"])
    return MqttEndpoint(url.hostname or "127.0.0.1", url.port or 1883,
                        int(os.environ.get("MQTT_TLS_PORT", "8883")), url.username or "",
                        url.password or "", Path(os.environ.get("MQTT_CA_FILE", "")),
                        os.environ.get("MQTT_ADMIN_PASSWORD", ""))


@pytest.fixture
def mqtt_server(mosquitto_broker: LocalMosquitto | None) -> MqttEndpoint:
    """The session broker with the bridge's login, also in a directory whose ``mosquitto`` is a tenant's."""
    return mosquitto_broker.endpoint if mosquitto_broker is not None else _endpoint_from_env()


@pytest.fixture
async def tenant(mosquitto: MqttEndpoint) -> MqttLogin:
    """A fresh tenant login on the session broker (publishes reports, reads billing/keys/status)."""
    return await new_tenant(mosquitto)


@pytest.fixture
def mosquitto_process(tmp_dir: Path) -> Iterator[LocalMosquitto]:
    """A Mosquitto of the test's own, for tests that restart or kill the broker."""
    broker = LocalMosquitto(tmp_dir / "mosquitto", port=free_port(), tls_port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def clickhouse_engine_dsn(session_tmp: Path) -> Iterator[str]:
    """DSN of the session's ClickHouse engine, without a database."""
    if env := os.environ.get("CLICKHOUSE_URL"):
        parts = urlsplit(env)
        yield parts._replace(path="", query="").geturl()
        return
    if _docker_available():
        from testcontainers.clickhouse import ClickHouseContainer

        with ClickHouseContainer() as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(8123)
            yield f"http://{container.username}:{container.password}@{host}:{port}"
        return
    yield f"chdb://{session_tmp / 'chdb'}"


def with_database(engine_dsn: str, database: str) -> str:
    if engine_dsn.startswith("chdb:"):
        return f"{engine_dsn}?database={database}"
    return f"{engine_dsn.rstrip('/')}/{database}"


@pytest.fixture
def clickhouse_dsn(clickhouse_engine_dsn: str) -> str:
    """A DSN naming a fresh database on the session's engine (chDB: in this process only)."""
    return with_database(clickhouse_engine_dsn, f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def clickhouse(clickhouse_dsn: str) -> Iterator[Any]:
    """A client on a fresh database with all migrations applied."""
    from meterline.clickhouse import get_client
    from meterline.migrations import apply_migrations

    client = get_client(clickhouse_dsn)
    apply_migrations(client)
    yield client
    client.command(f"DROP DATABASE IF EXISTS `{client.database}`")
