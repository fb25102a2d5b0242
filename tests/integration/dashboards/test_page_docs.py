"""/docs (Swagger UI) and /redoc render from vendored files in a Chromium that cannot reach the internet,
declare the bearer scheme, and "Try it out" sends the token; FastAPI's CDN pages, the negative control,
stay blank there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
from clickhouse_connect.driver.client import Client
from fastapi import FastAPI

from gateway.main import create_app
from gateway.settings import GatewaySettings
from scripts.chromium import Chromium
from tests.integration.dashboards import sample
from tests.integration.dashboards.server import OPERATOR_TOKEN, serve


@pytest.fixture
def gateway(clickhouse: Client) -> Iterator[str]:
    """The gateway app as `meterline gateway` builds it, with the read API (its runtime is not started:
    the operator token is all this test needs)."""
    sample.insert_requests(clickhouse, sample.make_requests(["agent-docs"], 50, seed=1))
    with serve(create_app(GatewaySettings(operator_token=OPERATOR_TOKEN), read_client=clickhouse)) as base:
        yield base


@pytest.fixture
async def offline() -> AsyncIterator[Chromium]:
    async with Chromium(1400, 900, offline=True) as browser:
        yield browser


def outside(browser: Chromium) -> list[str]:
    return [u for u in browser.requests if urlsplit(u).hostname not in (None, "127.0.0.1", "localhost")
            and not u.startswith(("data:", "blob:", "about:"))]


async def test_swagger_ui_renders_offline_and_try_it_out_sends_the_token(gateway: str, offline: Chromium) -> None:
    await offline.goto(f"{gateway}/docs")
    title = await offline.wait_for("(document.querySelector('.swagger-ui .info .title') || {}).innerText")
    assert title.startswith("Meterline gateway")
    assert "GET/v1/agents/{agent_id}/summary" in (await offline.text("#swagger-ui")).replace("\n", "")
    await offline.click(".swagger-ui .btn.authorize")
    dialog = await offline.wait_for("(document.querySelector('.swagger-ui .dialog-ux') || {}).innerText")
    assert "bearer" in dialog and "http, Bearer" in dialog
    await offline.eval(f"""(() => {{
        const input = document.querySelector('.swagger-ui .dialog-ux input');
        const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
        set.call(input, '{OPERATOR_TOKEN}');
        input.dispatchEvent(new Event('input', {{bubbles: true}}));
        document.querySelector('.swagger-ui .dialog-ux .auth-btn-wrapper .authorize').click();
        document.querySelector('.swagger-ui .dialog-ux .btn-done').click(); }})()""")
    await offline.click("#operations-dashboard-agents .opblock-summary-control")
    await offline.wait_for("!!document.querySelector('#operations-dashboard-agents .try-out__btn')")
    await offline.click("#operations-dashboard-agents .try-out__btn")
    await offline.click("#operations-dashboard-agents .execute")
    code = await offline.wait_for("(document.querySelector('#operations-dashboard-agents .live-responses-table "
                                  "tbody .response-col_status') || {}).innerText")
    assert code.strip() == "200", code
    body = await offline.text("#operations-dashboard-agents .live-responses-table tbody .response-col_description")
    assert '"agent_id": "agent-docs"' in body
    assert not outside(offline), outside(offline)
    assert not [m for m in offline.console if "Content Security Policy" in m or m.startswith("exception")], \
        offline.console


async def test_redoc_renders_offline(gateway: str, offline: Chromium) -> None:
    await offline.goto(f"{gateway}/redoc")
    heading = await offline.wait_for("(document.querySelector('h1') || {}).innerText", timeout=60)
    assert heading.startswith("Meterline gateway")
    await offline.wait_for("document.body.innerText.includes('Agents with traffic')")
    assert "bearer" in await offline.eval("document.body.innerText")  # the security scheme is documented
    # the one thing ReDoc would fetch from elsewhere is the logo of its "API docs by Redocly" link, which
    # the policy refuses (the page does not need it)
    badge = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    assert set(outside(offline)) <= {badge}, outside(offline)
    refused = [m for m in offline.console if "Content Security Policy" in m]
    assert refused and all(badge in m for m in refused), offline.console
    assert not [m for m in offline.console if m.startswith("exception")], offline.console


async def test_fastapi_cdn_pages_are_blank_offline(offline: Chromium) -> None:
    """Negative control: the pages FastAPI serves by default need a CDN, and this browser has none."""
    with serve(FastAPI(title="control")) as base:
        await offline.goto(f"{base}/docs")
        await offline.wait_for("performance.getEntriesByType('resource').length >= 2")
        assert await offline.eval("document.querySelector('.swagger-ui .info')") is None
        assert [u for u in outside(offline) if "cdn.jsdelivr.net" in u], offline.requests
