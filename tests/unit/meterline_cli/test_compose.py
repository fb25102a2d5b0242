"""docker-compose.yml and the Dockerfile, validated without a Docker engine.

Checks services, pinned images, published ports, environment (every variable given to a Meterline
service is one our settings document), healthchecks, dependencies, commands that our CLIs accept,
and that every file the stack references exists.
"""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("init", "gateway", "bridge", "worker")
SCALABLE = ("gateway", "bridge", "worker")
SETTINGS_FILES = ("meterline/settings.py", "gateway/settings.py", "stream_workers/settings.py",
                  "dashboards/sql/limits.py")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def documented_env_vars() -> set[str]:
    names: set[str] = set()
    for rel in SETTINGS_FILES:
        text = (ROOT / rel).read_text()
        names |= set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b", text))
    return names


def test_services_and_pinned_images(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "clickhouse", "mosquitto", "mqtt-init", *APP_SERVICES} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2.")
    for name, svc in services.items():
        image = svc.get("image", "")
        assert image and ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
    for name in APP_SERVICES:
        assert services[name]["build"] == ".", name
        assert services[name]["image"] == services["gateway"]["image"], name


def test_kafka_runs_kraft_with_a_volume(services: dict[str, dict[str, Any]]) -> None:
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith("@kafka:9093")
    assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in services["kafka"]["volumes"])
    cluster_id = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", env["CLUSTER_ID"])
    assert len(cluster_id) == 22  # a base64 UUID, as kafka-storage format wants


def test_ports(services: dict[str, dict[str, Any]]) -> None:
    assert "8123:8123" in services["clickhouse"]["ports"]
    assert "8883:8883" in services["mosquitto"]["ports"]
    assert "1883" not in " ".join(services["mosquitto"]["ports"])  # plain MQTT stays inside the container
    gateway = services["gateway"]["ports"]
    assert len(gateway) == 1 and re.fullmatch(r"9092-\d+:9092", gateway[0]), "a host port range lets --scale work"
    for name in SCALABLE:
        assert "container_name" not in services[name], f"{name} must stay scalable"
        for port in services[name].get("ports", []):
            assert "-" in port.split(":")[0], f"{name}: a single fixed host port blocks --scale"


def test_healthchecks_and_dependencies(services: dict[str, dict[str, Any]]) -> None:
    for name in ("kafka", "clickhouse", "mosquitto", "gateway", "worker"):
        check = services[name]["healthcheck"]["test"]
        assert check[0] in ("CMD", "CMD-SHELL") and len(check) >= 2, name
    assert "/healthz" in " ".join(services["gateway"]["healthcheck"]["test"])
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        for dep, cond in deps.items():
            assert dep in services and dep != name, f"{name} -> {dep}"
            wanted = "service_completed_successfully" if dep in ("init", "mqtt-init") else "service_healthy"
            assert cond["condition"] == wanted, f"{name} -> {dep}"
            if wanted == "service_healthy":
                assert "healthcheck" in services[dep], dep
    assert "init" not in services["init"].get("depends_on", {})


def test_app_environment_is_documented(services: dict[str, dict[str, Any]]) -> None:
    known = documented_env_vars()
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["CLICKHOUSE_URL"].startswith("http://") and "@clickhouse:8123/" in env["CLICKHOUSE_URL"]
        unknown = set(env) - known
        assert not unknown, f"{name}: variables no settings class reads: {unknown}"
    bridge = services["bridge"]["environment"]
    assert bridge["MQTT_URL"].startswith("mqtts://") and "@mosquitto:8884" in bridge["MQTT_URL"]  # services listener
    assert services["worker"]["environment"]["METERLINE_SINK_MODE"] == "direct"  # ClickHouse server, not chDB


def test_commands_are_accepted_by_our_clis(services: dict[str, dict[str, Any]]) -> None:
    from meterline_cli.main import build_parser
    from stream_workers.cli import register as register_worker

    parser = build_parser()
    for name in ("gateway", "bridge"):
        cmd = services[name]["command"]
        assert cmd[0] == "meterline"
        parser.parse_args(cmd[1:])
    init = services["init"]["command"]
    for part in init[-1].split("&&"):
        words = part.split()
        assert words[0] == "meterline"
        parser.parse_args(words[1:])
    worker = services["worker"]["command"]
    assert worker[:3] == ["python", "-m", "stream_workers"]
    import argparse

    wp = argparse.ArgumentParser()
    register_worker(wp.add_subparsers(dest="command", required=True))
    wp.parse_args(worker[3:])


def test_every_referenced_file_exists(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    named = set(compose.get("volumes", {}))
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
    assert (ROOT / "Dockerfile").is_file()
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    init = (ROOT / "deploy/mosquitto/init.sh").read_text()
    for path in re.findall(r"^(?:cafile|certfile|keyfile|password_file)\s+(\S+)", conf, re.M):
        assert path.startswith("/mosquitto/secrets/"), path
        assert Path(path).name in init, f"init.sh does not create {path}"
    assert "allow_anonymous false" in conf and re.search(r"^listener 8883$", conf, re.M)
    assert re.search(r"^listener 1883 127\.0\.0\.1$", conf, re.M)
    assert init.startswith("#!/bin/sh") and "set -eu" in init


def test_dockerfile_copies_what_exists_and_installs_the_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[-\w.]*$", text, re.M)
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _dest = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    assert "pip install ." in text and re.search(r"^USER (?!root)\w+", text, re.M)
    # every package the distribution installs (pyproject's find patterns), not a list kept by hand
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.name for p in ROOT.iterdir()
                if (p / "__init__.py").is_file() and any(fnmatch(p.name, pattern) for pattern in patterns)}
    assert {"meterline", "meterline_cli", "gateway", "stream_workers", "dashboards", "schemas"} <= packages
    for package in packages:
        assert re.search(rf"^COPY {package} ", text, re.M), package


def test_optional_grafana_uses_the_same_sql_files(services: dict[str, dict[str, Any]]) -> None:
    import json

    from dashboards.grafana import OUTPUT, PANELS, grafana_sql, render
    from dashboards.queries import load_sql

    grafana = services["grafana"]
    assert grafana["profiles"] == ["grafana"] and "grafana-clickhouse-datasource" in grafana["environment"][
        "GF_INSTALL_PLUGINS"]
    assert OUTPUT.read_text() == render(), "run: python -m dashboards.grafana"
    board = json.loads(OUTPUT.read_text())
    sqls = [p["targets"][0]["rawSql"] for p in board["panels"]]
    assert len(sqls) == len(PANELS)
    for (_, name, *_rest), sql in zip(PANELS, sqls, strict=True):
        assert sql == grafana_sql(name)
        assert not re.search(r"\{\w+:[^{}]+\}", sql), f"{name}: a server-side parameter was left"
        # the SQL is the file's, only the parameters differ
        skeleton = re.sub(r"\{\w+:[^{}]+\}", "?", load_sql(name)).strip()
        assert skeleton.split("?")[0] in sql
    datasource = (ROOT / "deploy/grafana/provisioning/datasources/clickhouse.yaml").read_text()
    assert yaml.safe_load(datasource)["datasources"][0]["uid"] == board["panels"][0]["datasource"]["uid"]
