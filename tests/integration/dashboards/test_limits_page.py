"""The page's Limits tab in Chromium: each limit with what it used and what remains, a reached one highlighted;
a limit set and deleted from the page as a person would, and the read API agreeing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from dashboards.limits import Limits
from schemas.limits import Limit
from scripts.chromium import Chromium
from tests.integration.dashboards.limits_data import insert
from tests.integration.dashboards.server import OPERATOR_TOKEN, dashboard_app, serve

AGENT = "agent-lim"
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
ROWS = """[...document.querySelectorAll('#table-limits tbody tr')].map((tr) =>
    [tr.dataset.limitId, tr.classList.contains('limit-reached'), getComputedStyle(tr).backgroundColor,
     [...tr.cells].map((c) => c.innerText)])"""


@pytest.fixture
def base(clickhouse: Client) -> Iterator[str]:
    now = datetime.now(UTC)
    earlier = max(now - timedelta(minutes=1), now.replace(hour=0, minute=0, second=0, microsecond=0))
    insert(clickhouse, [(AGENT, "llm", "gpt-4", 60, earlier.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23], "acme"),
                        (AGENT, "llm", "gpt-4o", 1234, earlier.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23], "globex")])
    limits = Limits(clickhouse)
    limits.put(Limit(agent_id=AGENT, meter="llm", unit="", period="month", quantity=Decimal(1_000_000)))
    limits.put(Limit(agent_id=AGENT, meter="llm", unit="", period="day", quantity=Decimal(50), customer_id="acme"))
    with serve(dashboard_app(clickhouse)) as url:
        yield url


@pytest.fixture
async def browser() -> AsyncIterator[Chromium]:
    async with Chromium(1400, 900) as b:
        yield b


async def _open(browser: Chromium, base: str) -> list[Any]:
    await browser.goto(f"{base}/dashboard/{AGENT}?tab=limits#token={OPERATOR_TOKEN}")
    state = await browser.wait_for("['ready', 'error', 'login'].includes(document.body.dataset.state) "
                                   "&& document.body.dataset.state")
    assert state == "ready", (await browser.text("#status"), browser.console[-5:])
    rows: list[Any] = await browser.eval(ROWS)
    return rows


async def test_the_limits_tab_shows_use_and_highlights_a_reached_limit(base: str, browser: Chromium) -> None:
    rows = await _open(browser, base)
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
        api = {s["limit_id"]: s for s in http.get(f"/v1/agents/{AGENT}/limits").json()["limits"]}
    assert sorted(r[0] for r in rows) == sorted(api)
    shown = {r[0]: (r[1], r[2], r[3]) for r in rows}
    acme = next(i for i, s in api.items() if s["customer_id"] == "acme")
    app = next(i for i, s in api.items() if s["customer_id"] is None)
    reached, colour, cells = shown[acme]
    assert reached is True and colour == "rgb(253, 236, 234)"  # tab-limits.css: the reached row stands out
    assert cells[:11] == [acme, "acme", "llm", "(every model)", "tokens", "day", "50", "60", "0", "120.0%",
                          api[acme]["period_end"].replace("T", " ").replace("+00:00", "").replace("Z", "")]
    reached, colour, cells = shown[app]
    assert reached is False and colour != "rgb(253, 236, 234)"
    assert cells[1] == "(whole agent)" and cells[6:10] == ["1,000,000", "1,294", "998,706", "0.1%"]
    summary = await browser.text("#limits-summary")
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?"
    assert re.fullmatch(rf"2 limits, 1 reached; used as stored at {stamp} UTC\.", summary), summary

    # set one from the form, then delete it from its row
    await browser.type("#limit-limit", "2500.5")
    await browser.type("#limit-customer", "globex")
    await browser.click("#limit-set")
    await browser.wait_for("document.querySelectorAll('#table-limits tbody tr').length === 3")
    assert (await browser.text("#limit-message")).startswith("set lim_")
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
        made = [s for s in http.get(f"/v1/agents/{AGENT}/limits").json()["limits"] if s["customer_id"] == "globex"]
        assert [(s["limit"], s["used"], s["period"], s["reached"]) for s in made] == [("2500.5", 1234, "month", False)]
        await browser.click(f"#table-limits tr[data-limit-id='{made[0]['limit_id']}'] a.drill")
        await browser.wait_for("document.querySelectorAll('#table-limits tbody tr').length === 2")
        assert len(http.get(f"/v1/agents/{AGENT}/limits").json()["limits"]) == 2
    # a refused limit says why, on the page
    await browser.type("#limit-meter", "gpu")
    await browser.type("#limit-limit", "1")
    await browser.click("#limit-set")
    await browser.wait_for("document.querySelector('#limit-message').textContent.includes('no meter')")
    assert not [m for m in browser.console if m.startswith("exception")], browser.console
