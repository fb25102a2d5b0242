"""Bad configuration gets a clear error, not a trace from inside a library."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from meterline.errors import ConfigError
from meterline.local.kafka import LocalKafka
from meterline.local.mosquitto import LocalMosquitto


def test_missing_java_is_reported(tmp_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        ports = a.getsockname()[1], b.getsockname()[1]
    with pytest.raises(ConfigError, match="Java is not on PATH"):
        LocalKafka(tmp_dir / "k", port=ports[0], controller_port=ports[1]).start()


def test_occupied_kafka_port_is_reported(tmp_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ConfigError, match=f"Kafka cannot listen on 127.0.0.1:{port}.*in use"):
            LocalKafka(tmp_dir / "k", port=port, controller_port=port + 1).start()


def test_occupied_mqtt_port_is_reported(tmp_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ConfigError, match="Mosquitto cannot listen"):
            LocalMosquitto(tmp_dir / "m", port=port, tls_port=port + 1).start()
