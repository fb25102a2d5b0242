"""deploy/cluster/: the compose file and the ClickHouse/Keeper configuration, checked without Docker.

Like tests/unit/meterline_cli/test_compose.py for the single-server stack: services, pinned images,
files that exist, dependencies with healthchecks; and what makes it a cluster: three brokers that
agree on their quorum and keep 3 copies with min ISR 2, a remote_servers cluster of 2 shards x 2
replicas whose hosts, shard and replica names match the services, three keepers that agree on their
ensemble, and application settings that build exactly that (replication factor, cluster name).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
HERE = ROOT / "deploy" / "cluster"
BROKERS = ("kafka-1", "kafka-2", "kafka-3")
KEEPERS = ("keeper-1", "keeper-2", "keeper-3")
SERVERS = ("ch-s1r1", "ch-s1r2", "ch-s2r1", "ch-s2r2")
APPS = ("init", "gateway", "bridge", "worker")
SETTINGS_FILES = ("meterline/settings.py", "gateway/settings.py", "stream_workers/settings.py",
                  "dashboards/sql/limits.py")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(HERE / "docker-compose.yml")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def _xml(name: str) -> ET.Element:
    return ET.parse(HERE / name).getroot()  # noqa: S314  # our own files


def test_services_images_and_files(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    base = _load(ROOT / "docker-compose.yml")["services"]
    assert {*BROKERS, *KEEPERS, *SERVERS, "mosquitto", "mqtt-init", *APPS} == set(services)
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
    for name in BROKERS:
        assert services[name]["image"] == base["kafka"]["image"]
    for name in SERVERS:
        assert services[name]["image"] == base["clickhouse"]["image"]
    ch_version = base["clickhouse"]["image"].split(":")[1]
    for name in KEEPERS:
        assert services[name]["image"] == f"clickhouse/clickhouse-keeper:{ch_version}"
    for name in APPS:
        assert services[name]["build"] == "../.." and services[name]["image"] == base["gateway"]["image"]
    named = set(compose["volumes"])
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (HERE / source).resolve().exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"


def test_dependencies_wait_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services and dep != name, f"{name} -> {dep}"
            wanted = "service_completed_successfully" if dep in ("init", "mqtt-init") else "service_healthy"
            assert cond["condition"] == wanted, f"{name} -> {dep}"
            if wanted == "service_healthy":
                assert services[dep]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), dep
    assert set(BROKERS) | set(SERVERS) <= set(services["init"]["depends_on"])  # ON CLUSTER reaches every server
    assert set(SERVERS) <= set(services["worker"]["depends_on"])
    for name in SERVERS:
        assert set(services[name]["depends_on"]) == set(KEEPERS)


def test_three_brokers_agree_on_their_quorum_and_keep_three_copies(services: dict[str, dict[str, Any]]) -> None:
    envs = [services[name]["environment"] for name in BROKERS]
    assert sorted(e["KAFKA_NODE_ID"] for e in envs) == ["1", "2", "3"]
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs}
    assert voters == {",".join(f"{e['KAFKA_NODE_ID']}@{n}:9093" for n, e in zip(BROKERS, envs, strict=True))}
    assert len({e["CLUSTER_ID"] for e in envs}) == 1
    assert len(re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", envs[0]["CLUSTER_ID"])) == 22
    for name, env in zip(BROKERS, envs, strict=True):
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in services[name]["volumes"])
        for key in ("DEFAULT_REPLICATION_FACTOR", "OFFSETS_TOPIC_REPLICATION_FACTOR",
                    "TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
            assert env[f"KAFKA_{key}"] == "3", key
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"


def test_remote_servers_macros_and_keepers_match_the_services(services: dict[str, dict[str, Any]]) -> None:
    clusters = _xml("clickhouse/remote_servers.xml").find("remote_servers")
    assert clusters is not None and len(clusters) == 1
    cluster = clusters[0]
    shards = [[r.findtext("host") for r in shard.findall("replica")] for shard in cluster.findall("shard")]
    assert shards == [["ch-s1r1", "ch-s1r2"], ["ch-s2r1", "ch-s2r2"]]
    assert all(s.findtext("internal_replication") == "true" for s in cluster.findall("shard"))
    secret = cluster.find("secret")
    assert secret is not None and secret.get("from_env") == "CLICKHOUSE_CLUSTER_SECRET"
    macros = _xml("clickhouse/macros.xml").find("macros")
    assert macros is not None
    from_env = {m.tag: m.get("from_env") for m in macros}
    assert from_env["shard"] == "CLICKHOUSE_SHARD" and from_env["replica"] == "CLICKHOUSE_REPLICA"
    for number, replicas in enumerate(shards, start=1):
        for host in replicas:
            env = services[host]["environment"]
            assert env["CLICKHOUSE_SHARD"] == str(number) and env["CLICKHOUSE_REPLICA"] == host
            assert services[host]["hostname"] == host and "CLICKHOUSE_CLUSTER_SECRET" in env
    # the Replicated paths the renderer writes name only macros the servers define
    from meterline.cluster_sql import ClusterRenderer

    renderer = ClusterRenderer(cluster.tag, "meterline")
    [local, _] = renderer.render("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a")
    assert set(re.findall(r"\{(\w+)\}", local)) <= set(from_env) | {"database"}
    keeper_nodes = [(n.findtext("host"), n.findtext("port")) for n in _xml("clickhouse/keeper.xml").iter("node")]
    keeper = _xml("keeper/keeper_config.xml").find("keeper_server")
    assert keeper is not None
    raft = [(s.findtext("id"), s.findtext("hostname")) for s in keeper.iter("server")]
    assert raft == [("1", "keeper-1"), ("2", "keeper-2"), ("3", "keeper-3")]  # an odd quorum: survives one loss
    assert keeper_nodes == [(name, keeper.findtext("tcp_port")) for name in KEEPERS]
    server_id = keeper.find("server_id")
    assert server_id is not None and server_id.get("from_env") == "KEEPER_SERVER_ID"
    for sid, name in raft:
        assert services[name]["environment"]["KEEPER_SERVER_ID"] == sid and services[name]["hostname"] == name


def test_applications_build_the_cluster_settings(services: dict[str, dict[str, Any]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.settings import GatewaySettings
    from meterline.settings import StackSettings
    from stream_workers.settings import WorkerSettings

    known: set[str] = set()
    for rel in SETTINGS_FILES:
        known |= set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b", (ROOT / rel).read_text()))
    cluster = _xml("clickhouse/remote_servers.xml").find("remote_servers")
    assert cluster is not None
    for name in APPS:
        env = services[name]["environment"]
        assert not set(env) - known, f"{name}: variables no settings class reads: {set(env) - known}"
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == ",".join(f"{b}:9092" for b in BROKERS)
        assert re.fullmatch(r"http://meterline:\$\{CLICKHOUSE_PASSWORD:-[^}]+\}@(ch-s\dr\d):8123/meterline",
                            env["CLICKHOUSE_URL"])
        assert env["METERLINE_CLICKHOUSE_CLUSTER"] == cluster[0].tag
        assert int(env["METERLINE_PARTITIONS"]) % len(cluster[0].findall("shard")) == 0
        for key, value in env.items():
            monkeypatch.setenv(key, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)))
        for settings in (StackSettings(), GatewaySettings(), WorkerSettings()):
            topics = settings.topics
            assert topics.replication_factor == 3 <= len(BROKERS), type(settings).__name__
            assert {s.config["min.insync.replicas"] for s in topics.specs()} == {"2"}
        assert StackSettings().clickhouse_cluster == WorkerSettings().clickhouse_cluster == cluster[0].tag
    assert services["worker"]["environment"]["METERLINE_SINK_MODE"] == "direct"


def test_commands_are_accepted_by_our_clis(services: dict[str, dict[str, Any]]) -> None:
    import argparse

    from meterline_cli.main import build_parser
    from stream_workers.cli import register as register_worker

    parser = build_parser()
    for name in ("gateway", "bridge"):
        assert services[name]["command"][0] == "meterline"
        parser.parse_args(services[name]["command"][1:])
    for part in services["init"]["command"][-1].split("&&"):
        words = part.split()
        assert words[0] == "meterline"
        parser.parse_args(words[1:])
    worker = argparse.ArgumentParser()
    register_worker(worker.add_subparsers(dest="command", required=True))
    worker.parse_args(services["worker"]["command"][3:])


def test_mqtt_is_the_single_server_stacks(services: dict[str, dict[str, Any]]) -> None:
    """Mosquitto is not clustered here: the same services as ../../docker-compose.yml, paths adjusted."""
    base = _load(ROOT / "docker-compose.yml")["services"]

    def rebased(value: Any) -> Any:
        if isinstance(value, str):
            return re.sub(r"^\./deploy/", "../", value)
        if isinstance(value, list):
            return [rebased(v) for v in value]
        if isinstance(value, dict):
            return {k: rebased(v) for k, v in value.items()}
        return value

    for name in ("mosquitto", "mqtt-init"):
        assert services[name] == rebased(base[name]), f"{name} differs from ../../docker-compose.yml"
    mqtt = {k: v for k, v in base["bridge"]["environment"].items() if k.startswith("MQTT_")}
    assert {k: v for k, v in services["bridge"]["environment"].items() if k.startswith("MQTT_")} == mqtt
    assert services["bridge"]["volumes"] == base["bridge"]["volumes"]
