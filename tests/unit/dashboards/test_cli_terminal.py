"""`meterline dashboard`'s formatting and errors, over the read API's JSON (faked at the HTTP transport)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from dashboards.errors import DashboardError
from dashboards.remote import GatewayRefused, RemoteViews, Token
from dashboards.terminal import (
    NoSuchAgent,
    fmt_change,
    fmt_count,
    fmt_money,
    fmt_ms,
    fmt_pct,
    fmt_rate,
    fmt_time,
    render_summary,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TOKEN = Token("t", "the key in METERLINE_TOKEN")


def test_number_formats() -> None:
    assert fmt_count(1234567) == "1,234,567" and fmt_count(None) == "0"
    assert fmt_pct(0.0094) == "0.94%" and fmt_pct(0.02) == "2.00%" and fmt_pct(1) == "100.00%"
    assert fmt_change(12.345) == "+12.3%" and fmt_change(-3.0) == "-3.0%" and fmt_change(None) == "n/a"
    assert fmt_ms(173.1063) == "173.1 ms" and fmt_ms(0.04) == "0.0 ms" and fmt_ms(1534.19) == "1,534.2 ms"
    assert fmt_rate(1534.19) == "1,534.2/min" and fmt_rate(0.0791) == "0.1/min"
    assert fmt_money(1234.5) == "1,234.5000 USDC" and fmt_money(2e-05) == "0.0000 USDC"
    assert fmt_money(0.39, "USD") == "0.3900 USD"
    assert fmt_time("2026-11-26T01:14:15.379000+00:00") == "2026-11-26 01:14:15 UTC" and fmt_time(None) == "never"


def _perf(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    keys = ("requests", "requests_per_minute", "error_rate", "avg_latency_ms", "p50_latency_ms", "p75_latency_ms",
            "p90_latency_ms", "p95_latency_ms", "p99_latency_ms")
    prev = previous or dict.fromkeys(current, 0)
    change = {k: (current[k] - prev[k]) / prev[k] * 100 if previous and prev[k] else None for k in keys}
    return {"window": "24h", "current": current, "previous": prev, "change_pct": change,
            "histogram": [], "hourly": []}


CURRENT = {"requests": 1500, "successes": 1400, "errors": 30, "payment_required": 70, "error_rate": 0.02,
           "avg_latency_ms": 173.1063, "requests_per_minute": 1.0417, "p50_latency_ms": 10.5,
           "p75_latency_ms": 20.25, "p90_latency_ms": 80.0, "p95_latency_ms": 1534.19, "p99_latency_ms": 2500.0}
STATS = {"agent_id": "agent-a", "total_requests": 1_234_567, "today_requests": 1500, "week_requests": 9000,
         "month_requests": 40000, "revenue": 1234.56789, "paid_requests": 4321, "payment_required": 70,
         "errors": 30, "avg_latency_ms": 173.1063, "error_rate": 0.0094,
         "last_request_at": "2026-11-26T11:59:58.123000Z"}


def _gateway(answers: dict[str, Any], seen: list[str] | None = None) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request.url.path)
        for suffix, (status, body) in answers.items():
            if request.url.path.endswith(suffix):
                return httpx.Response(status, json=body)
        return httpx.Response(404, json={"detail": "Not Found"})
    return httpx.MockTransport(handle)


def _views(**answers: Any) -> dict[str, Any]:
    base = {"/stats": (200, STATS),
            "/stats/daily": (200, {"days": [{"day": "2026-11-25", "requests": 3},
                                            {"day": "2026-11-26", "requests": 9}]}),
            "/customers": (200, {"customers": [{"customer_id": "acme", "requests": 1200, "revenue": 0.1,
                                                "avg_latency_ms": 17.6316, "error_rate": 0.1111}]}),
            "/tools": (200, {"tools": [{"tool_name": "chat", "requests": 1500, "p95_latency_ms": 30.5732,
                                        "error_rate": 0.0822, "revenue": 0.39}]}),
            "/performance": (200, _perf(CURRENT, {**CURRENT, "requests": 1000, "requests_per_minute": 0.6944,
                                                  "error_rate": 0.01, "p50_latency_ms": 10.0}))}
    base.update(answers)
    return base


def test_the_summary_formats_every_number_as_the_page_does() -> None:
    views = RemoteViews("http://gw", TOKEN, transport=_gateway(_views()))
    text = render_summary(views, "agent-a", 2, "24h", now=NOW)
    assert "Requests  total 1,234,567   today 1,500   7 days 9,000   30 days 40,000" in text
    assert "Revenue   1,234.5679 USDC from 4,321 paid requests   402 Payment Required 70" in text
    assert "Quality   avg latency 173.1 ms   error rate 0.94%" in text  # a percentage, like everywhere
    assert "Speed insights, last 24h (change vs the 24h before):" in text
    assert "p50 10.5 ms (+5.0%)" in text and "p95 1,534.2 ms (+0.0%)" in text
    # ok + errors + 402s add up to the total, and the 402s are shown
    assert "1,500 requests (+50.0%) = 1,400 ok + 30 errors + 70 payment required (402)" in text
    assert "1.0/min (+50.0%)   error rate 2.00% (24h before: 1.00%)" in text
    customers = text.split("Top customers")[1].split("Top tools")[0]
    assert re.search(r"acme\s+1,200\s+0\.1000\s+17\.6\s+11\.11%", customers), customers
    tools = text.split("Top tools")[1]
    assert re.search(r"chat\s+1,500\s+30\.6\s+8\.22%\s+0\.3900", tools), tools
    assert not re.search(r"\d\.\d{5,}", text), text  # no unformatted float anywhere


def test_without_a_previous_period_no_change_is_invented() -> None:
    views = RemoteViews("http://gw", TOKEN, transport=_gateway(_views(**{"/performance": (200, _perf(CURRENT, None))})))
    text = render_summary(views, "agent-a", 2, "24h", now=NOW)
    assert "Speed insights, last 24h (no traffic in the 24h before to compare):" in text
    assert "(+" not in text and "n/a" not in text


def test_an_unknown_agent_is_named_with_the_near_ones() -> None:
    empty = {**STATS, "total_requests": 0, "last_request_at": None}
    answers = _views(**{"/stats": (200, empty),
                        "/v1/agents": (200, {"agents": [{"agent_id": "demo-agent"}, {"agent_id": "other"}]})})
    views = RemoteViews("http://gw", TOKEN, transport=_gateway(answers))
    with pytest.raises(NoSuchAgent, match=r"^no such agent 'demo-agnet' \(did you mean 'demo-agent'\?\)$"):
        render_summary(views, "demo-agnet", 2, "24h", now=NOW)
    # a known agent without traffic gets its zeros; so does any agent when the gateway has no list
    known = RemoteViews("http://gw", TOKEN, transport=_gateway({**answers, "/v1/agents": (
        200, {"agents": [{"agent_id": "demo-agnet"}]})}))
    assert "total 0" in render_summary(known, "demo-agnet", 2, "24h", now=NOW)
    listless = {k: v for k, v in answers.items() if k != "/v1/agents"}
    assert "total 0" in render_summary(RemoteViews("http://gw", TOKEN, transport=_gateway(listless)),
                                       "demo-agnet", 2, "24h", now=NOW)


@pytest.mark.parametrize(("status", "detail", "says"), [
    (401, "missing or unknown credentials",
     "the gateway at http://gw does not accept the key in METERLINE_TOKEN (401: missing or unknown credentials); "
     "give an agent's API key or the operator token with --token"),
    (403, "this key belongs to agent 'demo-agent', not 'x'",
     "the key in METERLINE_TOKEN may not read this: this key belongs to agent 'demo-agent', not 'x'"),
    (422, [{"loc": ["query", "window"], "msg": "String should match pattern '^(1h|24h)$'", "type": "x"}],
     "the gateway at http://gw refused the request: window: String should match pattern '^(1h|24h)$'"),
    (503, "analytics store unavailable", "the gateway at http://gw answered 503: analytics store unavailable"),
])
def test_refusals_read_as_sentences(status: int, detail: Any, says: str) -> None:
    views = RemoteViews("http://gw", TOKEN, transport=_gateway({"/stats": (status, {"detail": detail})}))
    with pytest.raises(GatewayRefused) as caught:
        views.overview("x")
    assert str(caught.value) == says and caught.value.status == status
    assert json.dumps(detail) not in str(caught.value) or status != 422  # no raw validation JSON


def test_an_unreachable_gateway_is_named() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)
    views = RemoteViews("http://127.0.0.1:9", TOKEN, transport=httpx.MockTransport(refuse))
    with pytest.raises(DashboardError, match=r"^cannot reach the gateway at http://127\.0\.0\.1:9: "):
        views.overview("x")
