"""The read API and the web page, served by a real uvicorn, checked over HTTP and in headless Chromium.

The page is read as a person reads it — the text of its cards, tables and chart axes — and compared with
the read API's JSON for the same range and filters (the page shows them in ``#range``'s data attributes).
The interactive parts (range picker, filters, drill-down, logs, request detail) are test_page_explore.py's.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from scripts.chromium import Chromium
from tests.integration.dashboards import sample
from tests.integration.dashboards.pagedom import Dom, assert_table_shows, shows
from tests.integration.dashboards.server import OPERATOR_TOKEN, dashboard_app, serve

AGENT = "agent-web"
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
Live = tuple[str, list[sample.Req], list[sample.Usage], datetime]


@pytest.fixture
def live(clickhouse: Client) -> Iterator[Live]:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    reqs = sample.make_requests([AGENT, "agent-other"], 800, seed=3, now=now)
    usage = sample.make_usage([AGENT], 200, seed=5, now=now)
    sample.insert_requests(clickhouse, reqs, stored_at=now)
    sample.insert_usage(clickhouse, usage, stored_at=now)
    with serve(dashboard_app(clickhouse)) as base:
        yield base, reqs, usage, now


@pytest.fixture
async def browser() -> AsyncIterator[Chromium]:
    async with Chromium(1400, 900) as b:
        yield b


def test_read_api_requires_credentials_and_answers_with_the_views(live: Live) -> None:
    base, reqs, _usage, now = live
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get(f"/v1/agents/{AGENT}/stats").status_code == 401
        bad = http.get(f"/v1/agents/{AGENT}/stats", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        assert http.get("/v1/agents").status_code == 401
        stats = http.get(f"/v1/agents/{AGENT}/stats", headers=AUTH).json()
        assert stats["total_requests"] == len(sample.traffic(reqs, AGENT))
        assert http.get(f"/v1/agents/{AGENT}/performance?window=2w", headers=AUTH).status_code == 422
        assert http.get(f"/v1/agents/{AGENT}/logs?limit=0", headers=AUTH).status_code == 422
        for path in ("stats/daily?days=7", "customers", "tools", "revenue?period=week", "usage?period=month",
                     "summary?days=7", "series?days=2", "breakdown?by=tool", "performance?days=3"):
            assert http.get(f"/v1/agents/{AGENT}/{path}", headers=AUTH).status_code == 200, path

        agents = http.get("/v1/agents", headers=AUTH).json()["agents"]
        assert {a["agent_id"]: a["requests"] for a in agents} == {
            a: len(sample.traffic(reqs, a)) for a in (AGENT, "agent-other")}

        # filters are query parameters of the views; a status class outside the list is refused before any read
        day = {"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()}
        five = http.get(f"/v1/agents/{AGENT}/summary", params={**day, "status": "5xx"}, headers=AUTH).json()
        want = [r for r in sample.traffic(reqs, AGENT, now - timedelta(days=1), now) if r.status_code >= 500]
        assert five["current"]["requests"] == five["current"]["errors"] == len(want) > 0
        assert http.get(f"/v1/agents/{AGENT}/summary?status=6xx", headers=AUTH).status_code == 422
        series = http.get(f"/v1/agents/{AGENT}/series", params=day, headers=AUTH).json()
        assert series["step_seconds"] == 900 and sum(p["requests"] for p in series["points"]) == len(
            sample.traffic(reqs, AGENT, now - timedelta(days=1), now))
        assert http.get(f"/v1/agents/{AGENT}/series?days=366&step=60", headers=AUTH).status_code == 400

        # logs: keyset pages that never overlap, a cursor the API did not give refused, a request's detail
        first = http.get(f"/v1/agents/{AGENT}/logs?limit=5", headers=AUTH).json()
        assert len(first["logs"]) == 5 and first["logs"][0]["event_time"] >= first["logs"][-1]["event_time"]
        second = http.get(f"/v1/agents/{AGENT}/logs", params={"limit": 5, "cursor": first["next_cursor"]},
                          headers=AUTH).json()
        assert second["logs"][0]["event_time"] <= first["logs"][-1]["event_time"]
        assert not {r["request_id"] for r in first["logs"]} & {r["request_id"] for r in second["logs"]}
        assert http.get(f"/v1/agents/{AGENT}/logs?cursor=bm9wZQ", headers=AUTH).status_code == 400
        one = first["logs"][0]["request_id"]
        detail = http.get(f"/v1/agents/{AGENT}/requests/{one}", headers=AUTH).json()["request"]
        assert detail["request_id"] == one and detail["headers"] == {"user-agent": "test"}
        assert http.get(f"/v1/agents/agent-other/requests/{one}", headers=AUTH).status_code == 404

        page = http.get(f"/dashboard/{AGENT}")
        assert page.status_code == 200 and "Speed Insights" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert http.get("/dashboard/").status_code == 200
        assert http.get("/dashboard/static/core.js").headers["content-type"].startswith("text/javascript")
        assert http.get("/dashboard/static/..%2Fpage.py").status_code == 404
        assert "STATIC_FILES" not in http.get("/dashboard/static/../page.py").text
        assert http.get("/dashboard/static/queries.py").status_code == 404
        assert http.get("/dashboard/static/README.md").status_code == 404


async def open_tab(b: Chromium, base: str, tab: str, query: str = "") -> Dom:
    """Open a tab of the page as a person with the operator token would, once it has loaded."""
    await b.goto(f"{base}/dashboard/{AGENT}?tab={tab}{query}#token={OPERATOR_TOKEN}")
    state = await b.wait_for("['ready', 'error', 'login'].includes(document.body.dataset.state) "
                             "&& document.body.dataset.state")
    assert state == "ready", (tab, await b.text("#status"), b.console[-5:])
    assert OPERATOR_TOKEN not in await b.eval("location.href")  # the token left the address at once
    return Dom(await b.eval("document.documentElement.outerHTML"))


def api(http: httpx.Client, path: str, **params: Any) -> Any:
    resp = http.get(f"/v1/agents/{AGENT}/{path}", params=params, headers=AUTH)
    assert resp.status_code == 200, (path, resp.text)
    return resp.json()


CARD_KINDS = {"requests": "int", "errors": "int", "error_rate": "pct", "payment_required": "int", "revenue": "usd",
              "paid_requests": "int", "customers": "int", "avg_latency_ms": "ms", "p95_latency_ms": "ms",
              "p50_latency_ms": "ms", "p75_latency_ms": "ms", "p90_latency_ms": "ms", "p99_latency_ms": "ms",
              "successes": "int", "requests_per_minute": "ms"}


def assert_cards_show(dom: Dom, prefix: str, summary: dict[str, Any], keys: list[str]) -> None:
    for key in keys:
        text = dom.text[prefix + key]
        assert shows(CARD_KINDS[key], text, summary["current"][key]), (key, text, summary["current"][key])
        line = dom.changes[prefix + key]
        change = summary["change_pct"].get(key)
        if change is None and key not in summary["change_pct"]:  # the page computes it as the API does
            before = summary["previous"][key]
            change = (summary["current"][key] - before) / before * 100 if before else None
        if change is None:
            assert line == "no traffic in the previous period", (key, line)
        else:
            number, rest = line.split("%", 1)
            assert rest == " vs previous period" and shows("ms", number.lstrip("+"), change), (key, line, change)


async def test_every_tab_shows_the_api_numbers_in_chromium(live: Live, browser: Chromium) -> None:
    base, reqs, _usage, now = live
    start, end = now - timedelta(days=1), now + timedelta(seconds=1)
    rng = {"from": start.isoformat().replace("+00:00", "Z"), "to": end.isoformat().replace("+00:00", "Z")}
    query = f"&range=custom&from={rng['from']}&to={rng['to']}"
    with httpx.Client(base_url=base, timeout=30) as http:
        dom = await open_tab(browser, base, "overview", query)
        assert (dom.by_id["range"]["data-from"], dom.by_id["range"]["data-to"]) == (rng["from"], rng["to"])
        summary = api(http, "summary", **rng)
        assert summary["current"]["requests"] == len(sample.traffic(reqs, AGENT, start, end)) > 0
        assert_cards_show(dom, "ov-", summary, ["requests", "errors", "error_rate", "payment_required", "revenue",
                                                "paid_requests", "customers", "avg_latency_ms", "p95_latency_ms"])
        stats = api(http, "stats")
        assert shows("int", dom.text["ov-all-total_requests"], stats["total_requests"])
        overview = dom.by_id["chart-overview"]
        points = json.loads(overview["data-points"])
        series = api(http, "series", **rng)
        assert [p["requests"] for p in points] == [p["requests"] for p in series["points"]]
        # full width on a 1400 px page, a day of time axis in hours (not years), SI numbers on the y axis
        assert int(overview["data-width"]) >= 1300, overview["data-width"]
        x_ticks = json.loads(overview["data-x-ticks"])
        assert x_ticks and all(re.fullmatch(r"\d\d:\d\d(\n\d\d-\d\d)?", t) for t in x_ticks), x_ticks
        assert all(re.fullmatch(r"-?[\d.]+[kMGT]?", t) for t in json.loads(overview["data-y-ticks"]))
        assert await browser.eval("import('/dashboard/static/core.js').then((m) => "
                                  "[1234567, 950000, 1500, 12.5, 0.25, 0].map(m.si))") == [
            "1.23M", "950k", "1.5k", "12.5", "0.25", "0"]

        dom = await open_tab(browser, base, "analytics", query + "&by=tool")
        groups = api(http, "breakdown", by="tool", limit=100, **rng)["groups"]
        assert_table_shows(dom, "table-breakdown", groups, skip=("Share", "Change"), tool_name="key")
        assert json.loads(dom.by_id["chart-traffic"]["data-points"])[-1]["requests"] == series["points"][-1]["requests"]

        dom = await open_tab(browser, base, "customers", query)
        assert_table_shows(dom, "table-customers", api(http, "customers", limit=100, **rng)["customers"])
        dom = await open_tab(browser, base, "tools", query)
        assert_table_shows(dom, "table-tools", api(http, "tools", limit=100, **rng)["tools"])

        dom = await open_tab(browser, base, "revenue", query + "&period=day")
        revenue = api(http, "revenue", period="day", **rng)
        total, unit = dom.text["revenue-total"].split(" ")
        assert unit == "USDC" and shows("usd", total, revenue["total_amount"])
        assert_table_shows(dom, "table-revenue-periods", revenue["series"])
        assert_table_shows(dom, "table-revenue-tools", revenue["by_tool"])
        assert_table_shows(dom, "table-revenue-customers", revenue["by_customer"])
        revenue_ticks = json.loads(dom.by_id["chart-revenue"]["data-x-ticks"])
        assert all(re.fullmatch(r"\d\d:\d\d(\n\d\d-\d\d)?", t) for t in revenue_ticks), revenue_ticks

        dom = await open_tab(browser, base, "observability", query)
        assert_table_shows(dom, "table-logs", api(http, "logs", limit=50, **rng)["logs"])

        dom = await open_tab(browser, base, "speed", query)
        perf = api(http, "performance", **rng)
        assert_cards_show(dom, "perf-", perf, ["p50_latency_ms", "p75_latency_ms", "p90_latency_ms",
                                               "p95_latency_ms", "p99_latency_ms", "avg_latency_ms", "successes",
                                               "errors", "requests_per_minute"])
        latency = dom.by_id["chart-latency"]
        bars = json.loads(latency["data-points"])
        assert [b["requests"] for b in bars] == sample.naive_histogram(sample.traffic(reqs, AGENT, start, end))
        assert int(latency["data-series-pixels"]) > 2000, latency  # the bars are drawn
        # one readable label under every bar at this width, none overlapping the next
        labels = json.loads(latency["data-x-ticks"])
        assert labels == [b["bucket"] for b in bars] and labels[0] == "0–10 ms" and labels[-1] == "≥ 10 s"

        await open_tab(browser, base, "usage", query)
    assert not [m for m in browser.console if m.startswith("exception")], browser.console


async def test_a_latency_held_by_one_bucket_is_drawn(live: Live, browser: Chromium, clickhouse: Client) -> None:
    """A range whose traffic sits in one bucket of the latency-over-time chart (the first minutes after
    ``meterline demo``) shows it: a line joins two values, so a value with none beside it gets a dot."""
    base, reqs, _usage, now = live
    lone = now - timedelta(days=60)  # before the sample's 40 days: the range holds these two requests alone
    model = sample.traffic(reqs, AGENT)[0]
    two = [replace(model, request_id=f"lone-{i}", event_time=lone + timedelta(seconds=i), response_ms=ms)
           for i, ms in enumerate((10.0, 400.0))]
    sample.insert_requests(clickhouse, two, stored_at=now)
    start, end = lone - timedelta(hours=2), lone + timedelta(minutes=1)
    iso = {k: t.isoformat(timespec="milliseconds").replace("+00:00", "Z") for k, t in (("from", start), ("to", end))}
    dom = await open_tab(browser, base, "speed", f"&range=custom&from={iso['from']}&to={iso['to']}")
    hourly = dom.by_id["chart-hourly"]
    assert [p["requests"] for p in json.loads(hourly["data-points"]) if p["requests"]] == [2], hourly["data-points"]
    assert int(hourly["data-series-pixels"]) > 0, hourly  # the p95's dot, in its colour
    assert not [m for m in browser.console if m.startswith("exception")], browser.console


async def test_login_page_hides_the_tabs_and_says_why(live: Live, browser: Chromium) -> None:
    base = live[0]
    visible = "(id) => !!document.getElementById(id).offsetParent"
    await browser.goto(f"{base}/dashboard/{AGENT}")
    await browser.wait_for("document.body.dataset.state === 'login'")
    assert await browser.eval(f"['login', 'tabs', 'controls', 'panels'].map({visible})") == [
        True, False, False, False]
    assert await browser.text("#login-error") == "" and await browser.text("#status") == ""

    await browser.goto(f"{base}/dashboard/{AGENT}#token=not-the-operator-token")
    await browser.wait_for("document.body.dataset.state === 'login' && document.getElementById('login-error')"
                           ".textContent")
    assert await browser.text("#login-error") == "Unknown token"
    assert await browser.text("#status") == ""  # not stuck at "loading…"
    assert await browser.eval(f"['tabs', 'panels'].map({visible})") == [False, False]

    # the form signs in; the tabs appear only then
    await browser.eval(f"document.getElementById('login-token').value = '{OPERATOR_TOKEN}'")
    await browser.click("#login button[type=submit]")
    await browser.wait_for("document.body.dataset.state === 'ready'")
    assert await browser.eval(f"['login', 'tabs', 'panels'].map({visible})") == [False, True, True]


async def test_agents_page_lists_every_agent_and_leads_to_its_dashboard(live: Live, browser: Chromium) -> None:
    base, reqs, _usage, _now = live
    await browser.goto(f"{base}/dashboard/#token={OPERATOR_TOKEN}")
    await browser.wait_for("document.body.dataset.state === 'ready'")
    dom = Dom(await browser.eval("document.documentElement.outerHTML"))
    with httpx.Client(base_url=base, timeout=30) as http:
        agents = http.get("/v1/agents", headers=AUTH).json()["agents"]
    assert_table_shows(dom, "table-agents", agents)
    assert {a["agent_id"] for a in agents} == {AGENT, "agent-other"}
    assert await browser.eval("!!document.getElementById('tabs').offsetParent") is False
    await browser.click("#table-agents a.drill")  # the most recently active agent first
    await browser.wait_for("location.pathname.startsWith('/dashboard/agent-')"
                           " && document.body.dataset.state === 'ready'")
    assert await browser.eval("location.pathname") == f"/dashboard/{agents[0]['agent_id']}"
