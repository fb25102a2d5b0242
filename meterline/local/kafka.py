"""A single-node Apache Kafka broker (KRaft, combined broker + controller) as a local process.

The broker's jars come from Maven Central (``pom.xml`` beside this file pins every
``org.apache.kafka`` artifact to one version and adds the log4j2 backend). They are resolved once
into ``<cache>/kafka-<version>/libs`` and reused by every checkout and test session.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from meterline.errors import ConfigError, InfrastructureError
from meterline.kafka_admin import probe_kafka
from meterline.local import pidfile, processes
from meterline.local.child import ChildService
from meterline.local.ports import ensure_port_free
from meterline.paths import cache_home

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.3.1"
_POM = Path(__file__).with_name("kafka") / "pom.xml"
_COMPLETE_MARKER = ".complete"

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def kafka_libs_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_home() / f"kafka-{version}" / "libs"


def ensure_kafka_classpath(version: str = KAFKA_VERSION) -> Path:
    """Resolve the broker's runtime classpath with Maven unless it is cached; return the libs dir."""
    libs = kafka_libs_dir(version)
    if (libs / _COMPLETE_MARKER).exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigError(
            "Maven (mvn) is not on PATH; it is needed once to fetch Apache Kafka from Maven Central "
            "(apt-get install maven), or point KAFKA_BOOTSTRAP_SERVERS at a running broker"
        )
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log.info("resolving Apache Kafka %s from Maven Central into %s", version, libs)
    cmd = [
        mvn, "-q", "-B", "-f", str(_POM),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise InfrastructureError(
            f"could not resolve Apache Kafka {version} with Maven (exit {proc.returncode}):\n"
            f"{(proc.stdout + proc.stderr)[-2000:]}"
        )
    if not any(tmp.glob(f"kafka_2.13-{version}.jar")):
        raise InfrastructureError(f"Maven finished but kafka_2.13-{version}.jar is missing in {tmp}")
    (tmp / _COMPLETE_MARKER).write_text(version)
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    return libs


def new_cluster_id(randbytes: Callable[[int], bytes] = os.urandom) -> str:
    """A random Kafka cluster id (a version-4 UUID in 22 characters of URL-safe base64).

    One id in 64 would begin with ``-``, which ``kafka-storage format`` reads as an option; like
    Kafka's own ``Uuid.randomUuid`` we draw again until it does not.
    """
    while True:
        raw = uuid.UUID(bytes=randbytes(16), version=4).bytes
        cluster_id = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = shutil.which("java", path=f"{java_home}/bin") if java_home else None
    java = java or shutil.which("java")
    if java is None:
        raise ConfigError(
            "Java is not on PATH (Kafka needs Java 17+): install openjdk-17-jre-headless, set JAVA_HOME, "
            "or point KAFKA_BOOTSTRAP_SERVERS at a running broker"
        )
    return java


@dataclass
class LocalKafka(ChildService):
    """One Kafka broker process with its data under ``data_dir``.

    ``start()`` formats storage on first use (so a restart keeps the data), stops a broker an
    earlier run left on this data directory (``pidfile``), launches the broker (it dies with this
    process, ``processes.spawn``) and waits until it serves metadata and consumer groups.
    ``stop()`` shuts it down cleanly; ``kill()`` SIGKILLs it.
    """

    data_dir: Path
    port: int = 19092
    controller_port: int = 19093
    host: str = "127.0.0.1"
    heap: str = "1g"
    startup_timeout: float = 90.0
    extra_properties: dict[str, str] = field(default_factory=dict)
    #: the id to format new storage with (default: a random one, ``new_cluster_id()``)
    cluster_id: str | None = None
    #: ready means consumer groups work too (tests turn this off to show the errors it prevents)
    wait_for_groups: bool = True

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def _properties(self) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "data"),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        props.update(self.extra_properties)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java_cmd(self, main_class: str, *args: str) -> list[str]:
        libs = ensure_kafka_classpath()
        logs = self.data_dir / "logs"
        return [
            _java(),
            f"-Xmx{self.heap}", "-Xms256m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={logs}",
            "-cp", f"{libs}/*",
            main_class, *args,
        ]

    def _format(self, config: Path) -> None:
        if (self.data_dir / "data" / "meta.properties").exists():
            return
        # the ``--option=value`` form keeps any id a value, whatever character it starts with
        cmd = self._java_cmd("kafka.tools.StorageTool", "format", "--standalone",
                             f"--cluster-id={self.cluster_id or new_cluster_id()}", "-c", str(config))
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise InfrastructureError(f"formatting Kafka storage failed:\n{(proc.stdout + proc.stderr)[-2000:]}")

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    def start(self) -> Self:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        pidfile.stop_leftover(self._pid_file, str(config), "Kafka")
        ensure_port_free(self.host, self.port, "Kafka")
        ensure_port_free(self.host, self.controller_port, "Kafka controller")
        (self.data_dir / "logs").mkdir(exist_ok=True)
        config.write_text(self._properties())
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2)
        self._format(config)
        proc = self._proc = processes.spawn(self._java_cmd("kafka.Kafka", str(config)),
                                            self.data_dir / "logs" / "stdout.log")
        pidfile.write(self._pid_file, proc.pid)
        try:
            self._wait_ready(proc)
        except BaseException:
            self.kill()
            raise
        return self

    def _offsets_partitions(self) -> int:
        props = dict(line.split("=", 1) for line in self._properties().splitlines())
        return int(props["offsets.topic.num.partitions"])

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait until the broker serves metadata and consumer groups (no coordinator errors later)."""
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise InfrastructureError(
                    f"Kafka exited with code {proc.returncode} during start-up; "
                    f"see {self.data_dir / 'logs'}: {self._tail_log()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
                groups = self._offsets_partitions() if self.wait_for_groups else 0
                asyncio.run(probe_kafka(self.bootstrap_servers, timeout=2.0, offsets_partitions=groups))
                return
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last_error = exc
                time.sleep(0.25)
        raise InfrastructureError(f"Kafka did not become ready within {self.startup_timeout:.0f}s: {last_error}")

    def _tail_log(self) -> str:
        path = self.data_dir / "logs" / "stdout.log"
        try:
            return path.read_text(errors="replace")[-1500:]
        except OSError:
            return ""
