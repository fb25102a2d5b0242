"""The rule store (``dashboards/alerts.py``) on a real engine: what usage limits and the read API write through."""

from __future__ import annotations

from decimal import Decimal

import pytest
from clickhouse_connect.driver.client import Client
from pydantic import ValidationError

from dashboards.alerts import delete_rule, get_rule, list_rules, put_rule
from dashboards.errors import DashboardError
from schemas.alerts import Rule


def _usage(**kw: object) -> Rule:
    return Rule.model_validate({"agent_id": "agent-1", "rule_id": "limit:lim_1", "kind": "usage", "meter": "llm",
                                "unit": "tokens", "period": "month", "threshold": "1000000", **kw})


def test_put_creates_once_keeps_the_secret_and_replaces_on_a_second_put(clickhouse: Client) -> None:
    first = put_rule(clickhouse, _usage())
    assert first.created and first.secret and first.secret.startswith("whsec_")
    again = put_rule(clickhouse, _usage(threshold="2000000"))
    assert not again.created and again.secret is None
    rules = list_rules(clickhouse, "agent-1")
    assert [r["rule_id"] for r in rules] == ["limit:lim_1"]
    assert rules[0]["threshold"] == "2000000" and rules[0]["state"] == "ok" and "secret" not in rules[0]
    stored = clickhouse.query("SELECT DISTINCT secret FROM alert_rules").result_rows
    assert stored == [(first.secret,)]


def test_delete_hides_the_rule_and_reports_a_missing_one(clickhouse: Client) -> None:
    put_rule(clickhouse, _usage())
    put_rule(clickhouse, _usage(agent_id="agent-2"))
    assert delete_rule(clickhouse, "agent-1", "limit:lim_1")
    assert not delete_rule(clickhouse, "agent-1", "limit:lim_1")
    assert get_rule(clickhouse, "agent-1", "limit:lim_1") is None
    assert [(r["agent_id"], r["rule_id"]) for r in list_rules(clickhouse)] == [("agent-2", "limit:lim_1")]


def test_spend_rules_need_a_priced_meter_and_units_must_match(clickhouse: Client) -> None:
    assert put_rule(clickhouse, _usage(unit="USD", threshold="12.50")).rule.threshold == Decimal("12.50")
    with pytest.raises(DashboardError, match="counts 'tokens'"):
        put_rule(clickhouse, _usage(unit="seconds"))
    with pytest.raises(DashboardError, match="no price"):
        put_rule(clickhouse, _usage(meter="gpu", unit="USD"))
    assert put_rule(clickhouse, _usage(meter="gpu", unit="gpu-seconds")).rule.unit == "gpu-seconds"


@pytest.mark.parametrize(("fields", "message"), [
    ({"kind": "usage", "unit": "tokens"}, "names its meter"),
    ({"kind": "error_rate", "threshold": "1.5"}, "fraction below 1"),
    ({"kind": "no_traffic", "threshold": "3"}, "no threshold"),
    ({"kind": "p95_latency", "threshold": "200", "meter": "llm"}, "belong to usage rules"),
    ({"kind": "p95_latency", "threshold": "-1"}, "between 0"),
    ({"kind": "p95_latency", "threshold": "NaN"}, "finite"),
    ({"kind": "p95_latency", "threshold": "1", "window_s": 90}, "multiple of 60"),
    ({"kind": "p95_latency", "threshold": "1", "webhook_url": "ftp://x"}, "pattern"),
    ({"kind": "p95_latency", "threshold": "1", "rule_id": "a b"}, "pattern"),
])
def test_rules_that_make_no_sense_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Rule.model_validate({"agent_id": "a", "rule_id": "r1", **fields})
