"""Worker settings from the environment, and the embedding surface (create_app)."""

from __future__ import annotations

import faust
import pytest
from pydantic import ValidationError

import stream_workers
from stream_workers.app import WorkerService, create_app
from stream_workers.settings import WorkerSettings


def test_settings_come_from_the_documented_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("CLICKHOUSE_URL", "http://u:p@ch:8123/db")
    monkeypatch.setenv("METERLINE_TOPIC_PREFIX", "x.")
    monkeypatch.setenv("METERLINE_PARTITIONS", "12")
    monkeypatch.setenv("METERLINE_SINK_MODE", "topic")
    monkeypatch.setenv("METERLINE_SINK_OWNER", "0")
    monkeypatch.setenv("METERLINE_BODY_TTL_DAYS", "7")
    s = WorkerSettings()
    assert (s.kafka_bootstrap_servers, s.clickhouse_url) == ("k1:9092,k2:9092", "http://u:p@ch:8123/db")
    assert (s.topics.requests, s.topics.partitions, s.sink_topic) == ("x.requests", 12, "x.sink-batches")
    assert (s.sink_mode, s.sink_owner, s.body_ttl_days, s.writes_clickhouse) == ("topic", False, 7, False)
    monkeypatch.setenv("METERLINE_SINK_MODE", "sideways")
    with pytest.raises(ValidationError):
        WorkerSettings()


def test_who_writes_clickhouse() -> None:
    assert WorkerSettings(sink_mode="direct").writes_clickhouse
    assert WorkerSettings(sink_mode="topic", sink_owner=True, process=False).writes_clickhouse
    assert not WorkerSettings(sink_mode="direct", process=False).writes_clickhouse


def test_create_app_builds_a_faust_app_without_connecting() -> None:
    settings = WorkerSettings(kafka_bootstrap_servers="127.0.0.1:1", topic_prefix="emb.", session_timeout_s=7)
    app = create_app(settings)
    assert isinstance(app, faust.App)
    assert app.conf.id == "emb.workers"
    assert app.conf.broker_session_timeout == 7
    assert app.meterline_settings is settings
    services = app._extra_services
    assert len(services) == 1 and issubclass(services[0], WorkerService)  # type: ignore[arg-type]


def test_public_names() -> None:
    assert stream_workers.__all__ == ["StreamWorkerError"]
    import stream_workers.app as app_module

    assert sorted(app_module.__all__) == ["WorkerApp", "WorkerService", "create_app", "sink_topic_spec"]
