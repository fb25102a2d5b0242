"""Usage limits over a real chDB: stored and read back, and checked against the usage rollup of migration 0005
at the edges of UTC days and months, per app and per end customer.

The tests share one migrated database (migrating takes seconds) and each uses an app of its own."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from dashboards.limits import LimitNotFound, Limits, LimitsError
from meterline.clickhouse import get_client
from meterline.migrations import MIGRATIONS_DIR, apply_migrations
from schemas.limits import Limit
from tests.conftest import with_database
from tests.integration.dashboards.limits_data import insert, utc

APP = "app-lim"


@pytest.fixture(scope="module")
def shared(clickhouse_engine_dsn: str) -> Iterator[Client]:
    client = get_client(with_database(clickhouse_engine_dsn, f"t_{uuid.uuid4().hex[:12]}"))
    apply_migrations(client)
    yield client
    client.command(f"DROP DATABASE IF EXISTS `{client.database}`")


@pytest.fixture
def clickhouse(shared: Client) -> Iterator[Client]:
    """The shared database, emptied of the tables these tests write."""
    for table in ("limits", "usage_events", "usage_customer_day", "alert_rules", "alert_events"):
        shared.command(f"TRUNCATE TABLE {table}")
    yield shared


def _limit(quantity: str, period: str = "month", customer: str | None = None, model: str = "",
           meter: str = "llm") -> Limit:
    return Limit(agent_id=APP, meter=meter, unit="", period=period, quantity=Decimal(quantity),
                 customer_id=customer, model=model)


def test_month_limit_under_at_and_over_at_the_month_edge(clickhouse: Client) -> None:
    limits = Limits(clickhouse)
    limits.put(_limit("1000"))
    day = limits.put(_limit("500", period="day")).limit
    insert(clickhouse, [(APP, "llm", "gpt-4", 400, "2026-01-15T10:00:00", "acme"),
                        (APP, "llm", "gpt-4o", 599, "2026-01-31T23:59:59.999", None),
                        (APP, "tts", "eleven-labs", 9999, "2026-01-31T12:00:00", None),  # another meter
                        (APP, "llm", "gpt-4", 5, "2026-02-01T00:00:00", "acme"),
                        ("other-app", "llm", "gpt-4", 9999, "2026-01-20T00:00:00", "acme")])
    last_ms = utc("2026-01-31T23:59:59.999")

    under = limits.check(APP, "llm", Decimal(1), at=last_ms)
    assert under["unit"] == "tokens"
    states = {s["period"]: s for s in under["limits"]}
    assert (states["month"]["used"], states["month"]["remaining"], states["month"]["reached"]) == (999, "1", False)
    assert states["month"]["period_start"] == utc("2026-01-01T00:00:00")
    assert states["month"]["period_end"] == utc("2026-02-01T00:00:00")  # when it resets
    assert (states["day"]["used"], states["day"]["reached"], states["day"]["allowed"]) == (599, True, False)
    # the day limit (500) is over already: the check says no, and names it
    assert under["allowed"] is False and under["limit_id"] == day.limit_id and under["remaining"] == "0"
    limits.delete(APP, day.limit_id)

    at_limit = limits.check(APP, "llm", Decimal(1), at=last_ms)
    assert at_limit["allowed"] is True and at_limit["used"] == 999 and at_limit["remaining"] == "1"
    insert(clickhouse, [(APP, "llm", "gpt-4", 1, "2026-01-31T23:59:59.999", None)])
    reached = limits.check(APP, "llm", Decimal(1), at=last_ms)
    assert (reached["allowed"], reached["used"], reached["remaining"], reached["limit"]) == (False, 1000, "0", "1000")
    assert limits.check(APP, "llm", Decimal(0), at=last_ms)["allowed"] is True  # nothing more is always fine
    insert(clickhouse, [(APP, "llm", "gpt-4", 7, "2026-01-02T00:00:00", None)])
    over = limits.check(APP, "llm", Decimal(1), at=utc("2026-01-02T00:00:00"))
    assert (over["allowed"], over["used"], over["remaining"]) == (False, 1007, "0")
    assert over["limits"][0]["reached"] is True

    # the first millisecond of February is a new period: only February's usage counts
    feb = limits.check(APP, "llm", Decimal(995), at=utc("2026-02-01T00:00:00"))
    assert (feb["allowed"], feb["used"], feb["remaining"]) == (True, 5, "995")
    assert feb["period_start"] == utc("2026-02-01T00:00:00") and feb["period_end"] == utc("2026-03-01T00:00:00")
    assert limits.check(APP, "llm", Decimal(996), at=utc("2026-02-28T23:59:59"))["allowed"] is False
    # a meter without a limit, and another app: allowed, no limit named
    free = limits.check(APP, "tts", Decimal(10**9), at=last_ms)
    assert free["allowed"] is True and free["limit"] is None and free["limits"] == []
    assert limits.check("other-app", "llm", Decimal(1), at=last_ms)["limits"] == []


def test_customer_limits_and_the_app_limit_apply_together(clickhouse: Client) -> None:
    limits = Limits(clickhouse)
    app_limit = limits.put(_limit("1000")).limit
    acme = limits.put(_limit("100", customer="acme")).limit
    gpt4 = limits.put(_limit("50", customer="globex", model="gpt-4")).limit
    insert(clickhouse, [(APP, "llm", "gpt-4", 80, "2026-03-03T01:00:00", "acme"),
                        (APP, "llm", "gpt-4o", 760, "2026-03-04T01:00:00", "initech"),
                        (APP, "llm", "gpt-4", 40, "2026-03-05T01:00:00", "globex"),
                        (APP, "llm", "gpt-4o", 10, "2026-03-05T02:00:00", "globex")])
    at = utc("2026-03-10T00:00:00")
    acme_more = limits.check(APP, "llm", Decimal(30), customer="acme", at=at)
    assert acme_more["allowed"] is False and acme_more["limit_id"] == acme.limit_id
    assert {s["limit_id"]: s["used"] for s in acme_more["limits"]} == {acme.limit_id: 80, app_limit.limit_id: 890}
    assert limits.check(APP, "llm", Decimal(10), customer="acme", at=at)["allowed"] is True
    # initech has no limit of its own: the app's 1000 (890 used by everyone) decides
    initech = limits.check(APP, "llm", Decimal(111), customer="initech", at=at)
    assert (initech["allowed"], initech["limit_id"], initech["used"]) == (False, app_limit.limit_id, 890)
    assert limits.check(APP, "llm", Decimal(110), customer="initech", at=at)["allowed"] is True
    # globex's limit counts gpt-4 only, and applies only to checks of gpt-4
    assert limits.check(APP, "llm", Decimal(10), customer="globex", model="gpt-4", at=at)["allowed"] is True
    g = limits.check(APP, "llm", Decimal(10), customer="globex", model="gpt-4", at=at)
    assert {s["limit_id"]: s["used"] for s in g["limits"]} == {gpt4.limit_id: 40, app_limit.limit_id: 890}
    assert [s["limit_id"] for s in limits.check(APP, "llm", Decimal(1), customer="globex", at=at)["limits"]] == [
        app_limit.limit_id]
    # the listing has every limit with its use
    status = {s["limit_id"]: (s["scope"], s["customer_id"], s["used"], s["reached"]) for s in limits.status(APP, at)}
    assert status == {app_limit.limit_id: ("app", None, 890, False), acme.limit_id: ("customer", "acme", 80, False),
                      gpt4.limit_id: ("customer", "globex", 40, False)}


def test_set_twice_is_one_limit_and_delete_removes_it(clickhouse: Client) -> None:
    limits = Limits(clickhouse)
    first = limits.put(_limit("10", customer="acme"), now=utc("2026-01-01T00:00:00"))
    second = limits.put(_limit("2.5", customer="acme"), now=utc("2026-01-02T00:00:00"))
    assert (first.created, second.created) == (True, False) and first.limit.limit_id == second.limit.limit_id
    [stored] = limits.find(APP)
    assert stored.quantity == Decimal("2.5") and stored.created_at == utc("2026-01-01T00:00:00")
    assert stored.updated_at == utc("2026-01-02T00:00:00")
    limits.delete(APP, stored.limit_id)
    assert limits.find(APP) == []
    with pytest.raises(LimitNotFound):
        limits.delete(APP, stored.limit_id)
    with pytest.raises(LimitsError, match="no meter 'gpu'"):
        limits.put(_limit("1", meter="gpu"))
    with pytest.raises(LimitsError, match="counts tokens, not 'seconds'"):
        limits.put(Limit(agent_id=APP, meter="llm", unit="seconds", period="day", quantity=Decimal(1)))


def test_a_repeated_sink_batch_counts_once(clickhouse: Client) -> None:
    limits = Limits(clickhouse)
    limits.put(_limit("100"))
    batch = [(APP, "llm", "gpt-4", 60, "2026-05-05T00:00:00", "acme")]
    insert(clickhouse, batch)
    insert(clickhouse, batch)  # the same rows, the same token: a replayed batch
    assert limits.check(APP, "llm", Decimal(1), at=utc("2026-05-06T00:00:00"))["used"] == 60


def test_usage_stored_before_the_migration_is_counted(clickhouse_dsn: str, tmp_path: Path) -> None:
    earlier = tmp_path / "migrations"
    earlier.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) < 5:
            shutil.copy(path, earlier / path.name)
    client = get_client(clickhouse_dsn)
    try:
        apply_migrations(client, earlier)
        insert(client, [(APP, "llm", "gpt-4", 70, "2026-06-01T00:00:00", "acme")])
        assert 5 in apply_migrations(client)
        insert(client, [(APP, "llm", "gpt-4", 5, "2026-06-02T00:00:00", "acme")])
        limits = Limits(client)
        limits.put(_limit("100", customer="acme"))
        assert limits.check(APP, "llm", Decimal(1), customer="acme", at=utc("2026-06-30T00:00:00"))["used"] == 75
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{client.database}`")


def test_each_limit_has_its_usage_alert_rule(clickhouse: Client) -> None:
    """The contract with the alerts (docs/alerts.md): rule ``limit:<id>`` of kind usage, kept in step."""
    from dashboards.alerts import get_rule

    limits = Limits(clickhouse)
    stored = limits.put(_limit("1000", customer="acme", model="gpt-4"), webhook_url="https://hooks.example/x")
    rule_id = f"limit:{stored.limit.limit_id}"
    assert stored.alert_secret and stored.alert_secret.startswith("whsec_")
    rule = get_rule(clickhouse, APP, rule_id)
    assert rule is not None
    assert {k: rule[k] for k in ("kind", "customer_id", "threshold", "meter", "model", "unit", "period",
                                 "webhook_url")} == {
        "kind": "usage", "customer_id": "acme", "threshold": "1000", "meter": "llm", "model": "gpt-4",
        "unit": "tokens", "period": "month", "webhook_url": "https://hooks.example/x"}
    again = limits.put(_limit("2000", customer="acme", model="gpt-4"))  # the webhook stays; no new secret
    assert again.alert_secret is None
    rule = get_rule(clickhouse, APP, rule_id)
    assert rule is not None and (rule["threshold"], rule["webhook_url"]) == ("2000", "https://hooks.example/x")
    assert [(s["alert_rule_id"], s["alert_state"]) for s in limits.status(APP)] == [(rule_id, "ok")]
    limits.delete(APP, stored.limit.limit_id)
    assert get_rule(clickhouse, APP, rule_id) is None
    zero = limits.put(_limit("0", period="day"))  # reached from the start: blocked, no rule to fire
    assert get_rule(clickhouse, APP, f"limit:{zero.limit.limit_id}") is None
    assert limits.check(APP, "llm", Decimal(1))["allowed"] is False


async def test_reaching_a_limit_fires_its_alert_once_through_the_alerts_evaluator(clickhouse: Client) -> None:
    """No evaluator of its own: the alerts' evaluator reads the rule the limit wrote, fires when usage reaches
    the limit (not before), once, and the listing shows the rule firing."""
    from stream_workers.alerts.evaluator import AlertEvaluator

    limits = Limits(clickhouse)
    stored = limits.put(_limit("100", customer="acme", period="day"))
    rule_id = f"limit:{stored.limit.limit_id}"
    noon = utc("2026-03-15T12:00:00")
    evaluator = AlertEvaluator(lambda: clickhouse, clock=lambda: noon, close_client=False)
    try:
        insert(clickhouse, [(APP, "llm", "gpt-4", 99, "2026-03-15T01:00:00", "acme"),
                            (APP, "llm", "gpt-4", 500, "2026-03-15T01:00:00", "globex"),  # another customer
                            (APP, "llm", "gpt-4", 500, "2026-03-14T23:59:59.999", "acme")])  # the day before
        assert [e for e in (await evaluator.tick()).events if e["rule_id"] == rule_id] == []  # 99 of 100: quiet
        insert(clickhouse, [(APP, "llm", "gpt-4o", 1, "2026-03-15T11:59:00", "acme")])
        assert limits.check(APP, "llm", Decimal(1), customer="acme", at=noon)["allowed"] is False
        fired = [e for e in (await evaluator.tick()).events if e["rule_id"] == rule_id]
        assert [(e["transition"], e["value"]) for e in fired] == [("fired", "100")]
        assert [e for e in (await evaluator.tick()).events if e["rule_id"] == rule_id] == []  # once
        [state] = limits.status(APP, noon)
        assert (state["reached"], state["alert_state"]) == (True, "firing")
    finally:
        await evaluator.close()
