"""The page's Alerts tab in Chromium: rules with their state (a firing one highlighted), recent transitions
and deliveries as the read API gives them; a rule created from the form (its secret shown once) and deleted
from its row, as a person would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from dashboards.alerts import put_rule
from schemas.alerts import Rule
from scripts.chromium import Chromium
from stream_workers.alerts.evaluator import AlertEvaluator
from stream_workers.alerts.settings import AlertSettings
from tests.integration.alerts.harness import Clock, Receiver, requests
from tests.integration.dashboards.server import OPERATOR_TOKEN, dashboard_app, serve

AGENT = "agent-1"  # the harness's traffic
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
ROWS = """[...document.querySelectorAll('#table-alert-rules tbody tr')].map((tr) =>
    [tr.dataset.ruleId, tr.classList.contains('alert-firing'), getComputedStyle(tr).backgroundColor,
     [...tr.cells].map((c) => c.innerText)])"""


@pytest.fixture
async def base(clickhouse: Client) -> AsyncIterator[str]:
    receiver = Receiver.reserve().listen()
    put_rule(clickhouse, Rule(agent_id=AGENT, rule_id="errors", kind="error_rate", threshold="0.1", window_s=60,
                              webhook_url=receiver.url, name="5xx"))
    put_rule(clickhouse, Rule(agent_id=AGENT, rule_id="limit:lim_1", kind="usage", meter="llm", unit="tokens",
                              period="month", threshold="1000000"))
    requests(clickhouse, AGENT, 0, 10, errors=5)
    clock = Clock()
    clock.at(1)
    evaluator = AlertEvaluator(lambda: clickhouse, AlertSettings(lag_s=0, allow_private_urls=True), clock=clock,
                               close_client=False)
    await evaluator.tick()  # errors fires, delivered once
    await evaluator.close()
    try:
        with serve(dashboard_app(clickhouse)) as url:
            yield url
    finally:
        receiver.close()


@pytest.fixture
async def browser() -> AsyncIterator[Chromium]:
    async with Chromium(1400, 900) as b:
        yield b


async def test_the_alerts_tab_shows_rules_state_and_deliveries_and_manages_rules(base: str, browser: Chromium) -> None:
    await browser.goto(f"{base}/dashboard/{AGENT}?tab=alerts#token={OPERATOR_TOKEN}")
    state = await browser.wait_for("['ready', 'error', 'login'].includes(document.body.dataset.state) "
                                   "&& document.body.dataset.state")
    assert state == "ready", (await browser.text("#status"), browser.console[-5:])
    rows: list[Any] = await browser.eval(ROWS)
    shown = {r[0]: r[1:] for r in rows}
    assert sorted(shown) == ["errors", "limit:lim_1"]
    firing, colour, cells = shown["errors"]
    assert firing is True and colour == "rgb(253, 236, 234)"  # tab-alerts.css: a firing rule stands out
    assert cells[:7] == ["errors", "5xx", "error_rate", "(whole agent)", "over 1 min", "10.00%", "firing"]
    assert cells[8] == "0.5"
    firing, colour, cells = shown["limit:lim_1"]
    assert firing is False and cells[4] == "llm tokens per month" and cells[6] == "ok"
    assert await browser.text("#alerts-summary") == "2 rules, 1 firing."
    events: list[Any] = await browser.eval("[...document.querySelectorAll('#table-alert-events tbody tr')]"
                                           ".map((tr) => [...tr.cells].map((c) => c.innerText))")
    assert [e[1:4] for e in events] == [["errors", "fired", "0.5"]]
    deliveries: list[Any] = await browser.eval("[...document.querySelectorAll('#table-alert-deliveries tbody tr')]"
                                               ".map((tr) => [...tr.cells].map((c) => c.innerText))")
    assert [d[1] for d in deliveries] == ["errors"] and deliveries[0][3:6] == ["1", "200", "delivered"]

    # create one from the form: the secret is shown once; then delete it from its row
    await browser.eval("document.querySelector('#alert-kind').value = 'p95_latency'")
    await browser.type("#alert-threshold", "750")
    await browser.type("#alert-webhook", "https://hooks.example.com/x")
    await browser.click("#alert-create")
    await browser.wait_for("document.querySelectorAll('#table-alert-rules tbody tr').length === 3")
    assert (await browser.text("#alert-secret")).startswith("whsec_")
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
        made = [r for r in http.get(f"/v1/agents/{AGENT}/alerts/rules").json()["rules"] if r["kind"] == "p95_latency"]
        assert [(r["threshold"], r["window_s"], r["webhook_url"]) for r in made] == [
            ("750", 300, "https://hooks.example.com/x")]
        await browser.click(f"#table-alert-rules tr[data-rule-id='{made[0]['rule_id']}'] td:last-child a.drill")
        await browser.wait_for("document.querySelectorAll('#table-alert-rules tbody tr').length === 2")
        assert len(http.get(f"/v1/agents/{AGENT}/alerts/rules").json()["rules"]) == 2
    assert not [m for m in browser.console if m.startswith("exception")], browser.console


def test_the_tab_is_linked_from_the_page(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as http:
        page = http.get(f"/dashboard/{AGENT}").text
        assert 'data-tab="alerts"' in page and 'id="tab-alerts"' in page
        assert http.get("/dashboard/static/tab-alerts.js").status_code == 200
        assert http.get("/dashboard/static/tab-alerts.css").status_code == 200


