"""Exploring the web page in headless Chromium as a person does — picking a range, typing a filter, clicking
through from a customer to its requests, searching, paging and opening a request — and after each step
reading what the page shows (cards, tables, the address bar's query string) against the read API's JSON
for the same range and filters, and the API's against the rows inserted (``sample.py``'s naive views).

The page's range is read from ``#range``'s data attributes (a preset's "now" is the browser's), so the API
is asked for exactly the range shown. A step is done when the address shows the new state and the page
says ``data-state="ready"``: the page writes the query string and sets ``loading`` in the same event
handler, so the old ``ready`` cannot be mistaken for the new one. The last test runs the screenshot script
(``scripts/screenshots.py``) so that it keeps working as the page changes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from gateway.main import create_app
from gateway.settings import GatewaySettings
from scripts import screenshots
from scripts.chromium import Chromium
from tests.integration.dashboards import sample
from tests.integration.dashboards.pagedom import Dom, assert_table_shows, shows
from tests.integration.dashboards.server import OPERATOR_TOKEN, dashboard_app, serve
from tests.integration.dashboards.test_page import CARD_KINDS, assert_cards_show

AGENT = "agent-explore"
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
NEEDLE = "needle-7f3"  # in the request bodies of three requests, and nowhere else
#: what another producer may have written to the topic: the read API drops the secret ones again
STORED_HEADERS = {"authorization": "Bearer sk-live-do-not-show", "cookie": "session=do-not-show",
                  "x-payment": "signed-do-not-show", "user-agent": "explorer/2.1", "x-request-source": "mcp-bridge"}
SHOWN_HEADERS = {"user-agent": "explorer/2.1", "x-request-source": "mcp-bridge"}
SUMMARY_CARDS = ["requests", "errors", "error_rate", "payment_required", "revenue", "paid_requests", "customers",
                 "avg_latency_ms", "p95_latency_ms"]
Live = tuple[str, list[sample.Req], datetime]


@pytest.fixture
def live(clickhouse: Client) -> Iterator[Live]:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    reqs = sample.make_requests([AGENT, "agent-other"], 1500, seed=9, now=now)
    for i, age in enumerate((timedelta(hours=2), timedelta(hours=30), timedelta(days=3))):
        reqs.append(sample.Req(AGENT, f"{AGENT}-needle-{i}", now - age, 200, 87.5 + i, "cust-needle", "search",
                               0.05 if i == 0 else 0.0, request_body=f'{{"prompt":"find the {NEEDLE}","n":{i}}}',
                               headers=STORED_HEADERS))
    sample.insert_requests(clickhouse, reqs, stored_at=now)
    with serve(dashboard_app(clickhouse)) as base:
        yield base, reqs, now


@pytest.fixture
async def browser() -> AsyncIterator[Chromium]:
    async with Chromium(1400, 900) as b:
        yield b


@pytest.fixture
def http(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live[0], headers=AUTH, timeout=30) as client:
        yield client


def api(http: httpx.Client, path: str, **params: Any) -> Any:
    resp = http.get(f"/v1/agents/{AGENT}/{path}", params={k: v for k, v in params.items() if v is not None})
    assert resp.status_code == 200, (path, resp.text)
    return resp.json()


async def dom(b: Chromium) -> Dom:
    return Dom(await b.eval("document.documentElement.outerHTML"))


async def settled(b: Chromium, **query: str | None) -> Dom:
    """Wait until the address bar's query string has ``query`` (None: the key is absent) and the page is
    ready; the page as it is then."""
    checks = " && ".join(f"q.get({json.dumps(k)}) === {json.dumps(v)}" for k, v in query.items()) or "true"
    await b.wait_for(f"(() => {{ const q = new URLSearchParams(location.search); "
                     f"return {checks} && document.body.dataset.state === 'ready'; }})()")
    assert OPERATOR_TOKEN not in await b.eval("location.href")
    return await dom(b)


async def open_page(b: Chromium, base: str, query: str) -> Dom:
    await b.goto(f"{base}/dashboard/{AGENT}?{query}#token={OPERATOR_TOKEN}")
    state = await b.wait_for("['ready', 'error', 'login'].includes(document.body.dataset.state) "
                             "&& document.body.dataset.state")
    assert state == "ready", (await b.text("#status"), b.console[-5:])
    return await dom(b)


def shown_range(page: Dom) -> dict[str, str]:
    return {"from": page.by_id["range"]["data-from"], "to": page.by_id["range"]["data-to"]}


def step_label(seconds: int) -> str:
    """How the page names a bucket width: "hour", "6 hours", "day"."""
    for n, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % n == 0:
            return name if seconds == n else f"{seconds // n} {name}s"
    return f"{seconds} seconds"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_range_picker_presets_custom_range_and_comparison(live: Live, browser: Chromium,
                                                                 http: httpx.Client) -> None:
    base, reqs, now = live
    page = await open_page(browser, base, "tab=overview")
    assert page.by_id["range-preset"] and await browser.eval("document.getElementById('range-preset').value") == "24h"

    # a preset: the last 7 days, compared with the 7 days before
    await browser.choose("#range-preset", "7d")
    page = await settled(browser, range="7d", tab=None)
    rng = shown_range(page)
    assert at(rng["to"]) - at(rng["from"]) == timedelta(days=7)
    summary = api(http, "summary", **rng)
    assert summary["current"]["requests"] == len(sample.traffic(reqs, AGENT, at(rng["from"]), at(rng["to"])))
    assert_cards_show(page, "ov-", summary, SUMMARY_CARDS)
    series = api(http, "series", **rng)
    points = json.loads(page.by_id["chart-overview"]["data-points"])
    assert [p["requests"] for p in points] == [p["requests"] for p in series["points"]]
    assert series["step_seconds"] >= 3600  # a week is not drawn in 15-minute buckets
    assert await browser.text("#ov-step") == f"per {step_label(series['step_seconds'])}; dashed: the previous " \
        "period, drawn 7 days later"

    # a custom range typed into the picker (UTC), applied
    start = (now - timedelta(days=3)).replace(second=0)
    end = (now - timedelta(hours=20)).replace(second=0)
    await browser.choose("#range-preset", "custom")
    await browser.wait_for("!!document.getElementById('range-from').offsetParent")
    await browser.choose("#range-from", start.strftime("%Y-%m-%dT%H:%M"))
    await browser.choose("#range-to", end.strftime("%Y-%m-%dT%H:%M"))
    await browser.click("#range-apply")
    iso = {"from": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "to": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    page = await settled(browser, range="custom", **iso)
    assert shown_range(page) == iso
    assert await browser.text("#range-label") == (f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC; "
                                                   f"previous: from {start - (end - start):%Y-%m-%d %H:%M}")
    summary = api(http, "summary", **iso)
    assert summary["current"]["requests"] == len(sample.traffic(reqs, AGENT, start, end)) > 0
    assert summary["previous"]["requests"] == len(sample.traffic(reqs, AGENT, start - (end - start), start))
    assert_cards_show(page, "ov-", summary, SUMMARY_CARDS)

    # without the comparison: no change lines, the state in the address
    await browser.click("#range-compare")
    page = await settled(browser, range="custom", compare="0", **iso)
    assert not [k for k in page.changes if k.startswith("ov-")], page.changes
    for key in SUMMARY_CARDS:
        assert shows(CARD_KINDS[key], page.text["ov-" + key], summary["current"][key]), key

    # the address is the view: opened anew (the token is in this tab's session), it shows the same cards
    address = await browser.eval("location.href")
    await browser.goto(address)
    again = await settled(browser, range="custom", compare="0", **iso)
    assert {k: again.text[k] for k in again.text if k.startswith("ov-")} == {
        k: page.text[k] for k in page.text if k.startswith("ov-")}
    assert await browser.eval("document.getElementById('range-compare').checked") is False


async def test_a_typed_filter_narrows_every_tab_and_is_kept_in_the_address(live: Live, browser: Chromium,
                                                                            http: httpx.Client) -> None:
    base, reqs, _now = live
    await open_page(browser, base, "range=7d")
    await browser.type("#filter-tool", "search")
    await browser.press("Enter")
    page = await settled(browser, range="7d", tool="search")
    rng = shown_range(page)
    assert await browser.text("#filter-chips") == "tool: search ×"
    summary = api(http, "summary", tool="search", **rng)
    want = [r for r in sample.traffic(reqs, AGENT, at(rng["from"]), at(rng["to"])) if r.tool_name == "search"]
    assert summary["current"]["requests"] == len(want) > 0
    assert summary["current"]["requests"] < api(http, "summary", **rng)["current"]["requests"]
    assert_cards_show(page, "ov-", summary, SUMMARY_CARDS)

    # another tab keeps the filter and the range
    await browser.click("#tabs button[data-tab=tools]")
    page = await settled(browser, tab="tools", range="7d", tool="search")
    tools = api(http, "tools", tool="search", limit=100, **rng)["tools"]
    assert [t["tool_name"] for t in tools] == ["search"]
    assert_table_shows(page, "table-tools", tools)

    # a second filter from the status list; both chips, both in the address
    await browser.choose("#filter-status", "5xx")
    page = await settled(browser, tab="tools", tool="search", status="5xx")
    tools = api(http, "tools", tool="search", status="5xx", limit=100, **rng)["tools"]
    assert_table_shows(page, "table-tools", tools)
    assert page.cells["table-tools"][1][3] == "100.00%"  # every 5xx is an error
    assert await browser.text("#filter-chips") == "tool: search ×status: 5xx ×clear all"

    # removing the tool filter by its chip widens the table again
    await browser.click("#filter-chips button[data-filter=tool]")
    page = await settled(browser, tab="tools", tool=None, status="5xx")
    tools = api(http, "tools", status="5xx", limit=100, **rng)["tools"]
    assert len(tools) > 1
    assert_table_shows(page, "table-tools", tools)
    assert await browser.eval("document.getElementById('filter-tool').value") == ""

    # a breakdown: Analytics by customer under the status filter; a group becomes a filter of the page
    await browser.click("#tabs button[data-tab=analytics]")
    await settled(browser, tab="analytics", status="5xx")
    await browser.choose("#breakdown-by", "customer")
    page = await settled(browser, tab="analytics", status="5xx", by="customer")
    groups = api(http, "breakdown", by="customer", status="5xx", limit=100, **rng)["groups"]
    assert_table_shows(page, "table-breakdown", groups, skip=("Share", "Change"), customer_id="key")
    assert page.cells["table-breakdown"][0][0] == "Customer"
    first = next(g["key"] for g in groups if g["key"])  # "(none)", requests without a customer, is no link
    await browser.click("#table-breakdown a.drill")
    page = await settled(browser, tab="analytics", status="5xx", by="customer", customer=first)
    assert_table_shows(page, "table-breakdown", api(http, "breakdown", by="customer", status="5xx", customer=first,
                                                    limit=100, **rng)["groups"], skip=("Share", "Change"),
                       customer_id="key")
    assert [row[0] for row in page.cells["table-breakdown"][1:]] == [first]


async def test_drill_down_paging_search_and_request_detail(live: Live, browser: Chromium, http: httpx.Client) -> None:
    base, reqs, _now = live
    # a customer leads to its requests
    page = await open_page(browser, base, "tab=customers&range=7d")
    rng = shown_range(page)
    customers = api(http, "customers", limit=100, **rng)["customers"]
    assert_table_shows(page, "table-customers", customers)
    top = customers[0]["customer_id"]
    await browser.click("#table-customers a.drill")
    page = await settled(browser, tab="observability", customer=top, range="7d")
    logs = api(http, "logs", customer=top, limit=50, **rng)
    count = customers[0]["requests"]
    assert len(logs["logs"]) == min(50, count) and (logs["next_cursor"] is None) == (count <= 50)
    assert_table_shows(page, "table-logs", logs["logs"])
    assert {row[5] for row in page.cells["table-logs"][1:]} == {top}
    assert await browser.text("#logs-info") == f"{min(50, count)} requests" + ("; more are older" if count > 50 else "")

    # back to every customer: a page of 50, then the next one, with no request on both
    await browser.click("#filter-chips button[data-filter=customer]")
    page = await settled(browser, tab="observability", customer=None, range="7d")
    first = api(http, "logs", limit=50, **rng)
    assert_table_shows(page, "table-logs", first["logs"])
    assert first["next_cursor"] and await browser.text("#logs-page") == "page 1"
    await browser.click("#logs-older")
    await browser.wait_for("document.getElementById('logs-page').textContent === 'page 2'")
    second = api(http, "logs", limit=50, cursor=first["next_cursor"], **rng)
    page = await dom(browser)
    assert_table_shows(page, "table-logs", second["logs"])
    shown_first = {r["request_id"] for r in first["logs"]}
    shown_second = {row[8] for row in page.cells["table-logs"][1:]}
    assert len(shown_second) == 50 and not shown_first & shown_second
    assert min(r["event_time"] for r in first["logs"]) >= max(r["event_time"] for r in second["logs"])
    await browser.click("#logs-newer")
    await browser.wait_for("document.getElementById('logs-page').textContent === 'page 1'")
    assert {row[8] for row in (await dom(browser)).cells["table-logs"][1:]} == shown_first

    # a search typed into the box (case does not matter) finds the three requests whose body holds it
    await browser.type("#logs-q", NEEDLE.upper())
    await browser.press("Enter")
    page = await settled(browser, tab="observability", q=NEEDLE.upper(), range="7d")
    found = api(http, "logs", q=NEEDLE.upper(), limit=50, **rng)["logs"]
    assert [r["request_id"] for r in found] == [f"{AGENT}-needle-{i}" for i in range(3)]
    assert_table_shows(page, "table-logs", found)
    assert await browser.text("#logs-info") == f"3 requests matching “{NEEDLE.upper()}”"

    # a request's detail: headers without the secret ones, the body as captured, timings and payment
    await browser.click("#table-logs tbody tr:first-child a.drill")
    one = f"{AGENT}-needle-0"
    await browser.wait_for(f"document.getElementById('request-detail').dataset.request === '{one}'"
                           " && document.getElementById('request-detail').getClientRects().length > 0")
    assert await browser.eval("new URLSearchParams(location.search).get('request')") == one
    assert await browser.eval("[...document.querySelectorAll('#table-logs tr.selected')].map((tr) => "
                              "tr.cells[8].innerText)") == [one]  # its row stands out in the list
    detail = api(http, f"requests/{one}")["request"]
    assert detail["headers"] == SHOWN_HEADERS
    page = await dom(browser)
    assert_table_shows(page, "table-headers", [{"name": k, "value": v} for k, v in detail["headers"].items()])
    visible = await browser.eval("document.body.innerText")
    assert "do-not-show" not in visible and "authorization" not in visible.lower()
    fields = await browser.eval("Object.fromEntries([...document.querySelectorAll('#request-detail dd')]"
                                ".map((d) => [d.dataset.field, d.innerText]))")
    assert fields["Event time (agent)"] == f"{datetime.fromisoformat(detail['event_time']):%Y-%m-%d %H:%M:%S} UTC"
    assert fields["Response time"] == "87.5 ms"
    assert fields["Customer"] == "cust-needle" and fields["Tool"] == "search" and fields["Status"] == "200"
    assert fields["Amount"] == "0.0500" and fields["Token"] == "USDC-base-mainnet"
    stored_after = (at(detail["stored_at"]) - at(detail["ingested_at"])) // timedelta(milliseconds=1)
    assert fields["  after ingest"] == f"{stored_after:,} ms"
    body = await browser.text("#rd-request-body")
    assert json.loads(body) == json.loads(detail["request_body"]) and body.startswith("{\n  ")  # pretty JSON
    size = len(detail["request_body"].encode())
    assert await browser.text("#rd-request-size") == f"{size} bytes" and detail["request_body_size"] == size

    # the detail's address opens it again; Close hides it and leaves the address
    address = await browser.eval("location.href")
    await browser.goto(address)
    await settled(browser, tab="observability", q=NEEDLE.upper(), request=one)
    assert await browser.eval("document.getElementById('request-detail').getClientRects().length > 0")
    assert await browser.text("#rd-id") == one
    await browser.click("#rd-close")
    assert await browser.eval("new URLSearchParams(location.search).get('request')") is None
    assert not await browser.eval("document.getElementById('request-detail').getClientRects().length > 0")

    # Escape shuts it too; from a request to its customer's requests
    two = f"{AGENT}-needle-1"
    opened = (f"document.getElementById('request-detail').dataset.request === '{two}'"
              " && document.getElementById('request-detail').getClientRects().length > 0")
    await browser.click("#table-logs tbody tr:nth-child(2) a.drill")
    await browser.wait_for(opened)
    await browser.press("Escape")
    assert not await browser.eval("document.getElementById('request-detail').getClientRects().length > 0")
    assert await browser.eval("document.querySelectorAll('#table-logs tr.selected').length") == 0
    await browser.click("#table-logs tbody tr:nth-child(2) a.drill")
    await browser.wait_for(opened)
    await browser.click("#rd-request dd[data-field=Customer] a.drill")
    page = await settled(browser, tab="observability", customer="cust-needle", q=None, request=None)
    assert_table_shows(page, "table-logs", api(http, "logs", customer="cust-needle", limit=50, **rng)["logs"])
    assert not await browser.eval("document.getElementById('request-detail').getClientRects().length > 0")
    assert not [m for m in browser.console if m.startswith("exception")], browser.console


async def test_the_screenshot_script_photographs_every_view(clickhouse: Client, tmp_path: Path) -> None:
    """scripts/screenshots.py against the gateway app as it ships (with /docs and /redoc): one PNG per view,
    1400 px wide, none blank, the login page first (before the token is in the tab's session)."""
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    sample.insert_requests(clickhouse, sample.make_requests([AGENT], 300, seed=4, now=now), stored_at=now)
    with serve(create_app(GatewaySettings(operator_token=OPERATOR_TOKEN), read_client=clickhouse)) as base:
        shots = await screenshots.take_all(base, OPERATOR_TOKEN, AGENT, tmp_path, 1400)
    assert [p.name for p in shots] == ["login.png", "agents.png"] + [
        f"tab-{i}-{tab}.png" for i, tab in enumerate(screenshots.TABS, 1)] + [
        "request-detail.png", "docs.png", "redoc.png"]
    for path in shots:
        png = path.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1400, path
        assert int.from_bytes(png[20:24], "big") >= 900 and len(png) > 20_000, (path, len(png))
