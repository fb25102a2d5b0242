"""The ClickHouse server's ad-hoc SQL user (``deploy/clickhouse/users.d/meterline-sql.xml``) and the compose file's
SQL DSN, checked against the gateway's own limits.

There is no ClickHouse server on the development machines (no Docker), so the file is parsed, not loaded by a
server: its settings must be the ones the embedded engine's sandbox sets (names the engine knows, values of
``SqlSettings``), each limit pinned by a constraint, readonly=1 constant, SELECT on Meterline's database its
only grant (a statement the engine parses), and the gateway's SQL DSN must log in as that user. What the
gateway checks when it opens such a client is tested with a fake transport in
``tests/unit/dashboards/test_sql_confine.py``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from clickhouse_connect.driver.client import Client

from dashboards.sql import SqlSettings
from dashboards.sql.limits import PINNED

ROOT = Path(__file__).resolve().parents[3]
USERS = ROOT / "deploy" / "clickhouse" / "users.d" / "meterline-sql.xml"


def users() -> ET.Element:
    return ET.parse(USERS).getroot()  # noqa: S314  # our own file


def test_the_profile_pins_the_gateways_limits(clickhouse: Client) -> None:
    profile = users().find("profiles/meterline_sql")
    assert profile is not None
    settings = {child.tag: (child.text or "").strip() for child in profile if child.tag != "constraints"}
    assert settings == SqlSettings().session()  # the same limits, whichever engine runs the query
    known = {str(r[0]) for r in clickhouse.query("SELECT name FROM system.settings").result_rows}
    assert set(settings) <= known
    constraints = profile.find("constraints")
    assert constraints is not None
    assert constraints.find("readonly/const") is not None
    for name in PINNED:
        assert constraints.findtext(f"{name}/max") == settings[name], name
        assert constraints.findtext(f"{name}/min") == "1", name  # 0 would be "unlimited"


def test_the_user_reads_meterline_only(clickhouse: Client) -> None:
    user = users().find("users/meterline_sql")
    assert user is not None
    assert user.findtext("profile") == "meterline_sql"
    assert user.findtext("access_management") == "0"
    password = user.find("password")
    assert password is not None and password.get("from_env") == "CLICKHOUSE_SQL_PASSWORD" and not password.text
    grants = [(q.text or "").strip() for q in user.findall("grants/query")]
    assert grants == ["GRANT SELECT ON meterline.*"]
    formatted = clickhouse.query("SELECT formatQuerySingleLine({q:String})",
                                 parameters={"q": grants[0] + " TO meterline_sql"}).result_rows[0][0]
    assert formatted == "GRANT SELECT ON meterline.* TO meterline_sql"


def test_compose_runs_ad_hoc_sql_as_that_user() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    dsn = urlsplit(services["gateway"]["environment"]["METERLINE_SQL_CLICKHOUSE_URL"])
    assert (dsn.username, dsn.hostname, dsn.path) == ("meterline_sql", "clickhouse", "/meterline")
    assert dsn.password == "${CLICKHOUSE_SQL_PASSWORD:-meterline-sql-local}"
    clickhouse = services["clickhouse"]
    assert "CLICKHOUSE_SQL_PASSWORD" in clickhouse["environment"]
    assert "./deploy/clickhouse/users.d/meterline-sql.xml:/etc/clickhouse-server/users.d/meterline-sql.xml:ro" \
        in clickhouse["volumes"]
    for name in ("worker", "bridge", "init"):  # the writers keep CLICKHOUSE_URL and no SQL DSN
        assert "METERLINE_SQL_CLICKHOUSE_URL" not in (services[name].get("environment") or {})


def test_the_cluster_runs_ad_hoc_sql_as_that_user_on_every_server() -> None:
    """deploy/cluster/: the same user on each of the four servers (a query through a Distributed table runs on
    the other shards as the user that sent it), and the gateway's SQL DSN logs in as it on the entry server."""
    services = yaml.safe_load((ROOT / "deploy" / "cluster" / "docker-compose.yml").read_text())["services"]
    dsn = urlsplit(services["gateway"]["environment"]["METERLINE_SQL_CLICKHOUSE_URL"])
    entry = urlsplit(services["gateway"]["environment"]["CLICKHOUSE_URL"])
    assert (dsn.username, dsn.hostname, dsn.path) == ("meterline_sql", entry.hostname, "/meterline")
    assert dsn.password == "${CLICKHOUSE_SQL_PASSWORD:-meterline-sql-local}"
    servers = [name for name in services if name.startswith("ch-")]
    assert len(servers) == 4
    for name in servers:
        assert services[name]["environment"]["CLICKHOUSE_SQL_PASSWORD"] == dsn.password, name
        assert "../clickhouse/users.d/meterline-sql.xml:/etc/clickhouse-server/users.d/meterline-sql.xml:ro" \
            in services[name]["volumes"], name
    for name in ("worker", "bridge", "init"):
        assert "METERLINE_SQL_CLICKHOUSE_URL" not in (services[name].get("environment") or {})
