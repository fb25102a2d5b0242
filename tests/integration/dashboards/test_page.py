"""The read API and the web page, served by a real uvicorn, checked over HTTP and in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from tests.integration.dashboards import sample
from tests.integration.dashboards.server import OPERATOR_TOKEN, dashboard_app, serve

AGENT = "agent-web"
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture
def live(clickhouse: Client) -> Iterator[tuple[str, list[sample.Req], list[sample.Usage], datetime]]:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    # no request within 10 minutes of a rolling window's edge (speed insights: 24 h and the 24 h before;
    # overview: 7 and 30 days): the server's clock runs on while the test renders and reads the API,
    # and an edge must not move across a request in between
    quiet = [(edge - timedelta(minutes=10), edge + timedelta(minutes=10))
             for edge in (timedelta(hours=24), timedelta(hours=48), timedelta(days=7), timedelta(days=30))]
    reqs = sample.make_requests([AGENT, "agent-other"], 800, seed=3, now=now, quiet_ages=quiet)
    usage = sample.make_usage([AGENT], 200, seed=5, now=now)
    sample.insert_requests(clickhouse, reqs, stored_at=now)
    sample.insert_usage(clickhouse, usage, stored_at=now)
    with serve(dashboard_app(clickhouse)) as base:
        yield base, reqs, usage, now


def test_read_api_requires_credentials_and_answers_with_the_views(live: Any) -> None:
    base, reqs, usage, now = live
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get(f"/v1/agents/{AGENT}/stats").status_code == 401
        bad = http.get(f"/v1/agents/{AGENT}/stats", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        stats = http.get(f"/v1/agents/{AGENT}/stats", headers=AUTH).json()
        assert stats["total_requests"] == len(sample.traffic(reqs, AGENT))
        assert stats["revenue"] == pytest.approx(sum(r.x402_amount for r in sample.traffic(reqs, AGENT)))
        assert http.get(f"/v1/agents/{AGENT}/performance?window=2w", headers=AUTH).status_code == 422
        assert http.get(f"/v1/agents/{AGENT}/logs?limit=0", headers=AUTH).status_code == 422
        logs = http.get(f"/v1/agents/{AGENT}/logs?limit=5", headers=AUTH).json()["logs"]
        assert len(logs) == 5 and logs[0]["event_time"] >= logs[-1]["event_time"]
        for path in ("stats/daily?days=7", "customers", "tools", "revenue?period=week", "usage?period=month"):
            assert http.get(f"/v1/agents/{AGENT}/{path}", headers=AUTH).status_code == 200, path

        month = now.strftime("%Y-%m")
        csv_resp = http.get(f"/v1/agents/{AGENT}/usage.csv?month={month}", headers=AUTH)
        assert csv_resp.status_code == 200 and csv_resp.headers["content-type"].startswith("text/csv")
        lines = csv_resp.text.strip().splitlines()
        assert lines[0] == "app_id,period_start,module,model,reports,units,cost"
        first = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
        nxt = (first + timedelta(days=32)).replace(day=1)
        want = sample.naive_usage(usage, AGENT, first, nxt, "day")
        assert len(lines) - 1 == len(want)
        assert sum(int(line.split(",")[5]) for line in lines[1:]) == sum(v[1] for v in want.values())

        page = http.get(f"/dashboard/{AGENT}")
        assert page.status_code == 200 and "Speed Insights" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert http.get("/dashboard/static/..%2Fpage.py").status_code == 404
        assert "STATIC_FILES" not in http.get("/dashboard/static/../page.py").text
        assert http.get("/dashboard/static/queries.py").status_code == 404


class _Dom(HTMLParser):
    """Attributes of every element with an id; the text a person reads in outputs, table cells and the
    change line under each speed card (``changes``, by the card's output id); cells' data-value."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}
        self.body: dict[str, str] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self.cells: dict[str, list[list[str]]] = {}
        self.text: dict[str, str] = {}
        self.changes: dict[str, str] = {}
        self._table: str | None = None
        self._text_of: str | None = None
        self._cell: list[str] | None = None
        self._last_output = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.by_id[a["id"]] = a
            if tag in ("output", "p", "span"):
                self._text_of = a["id"]
                self.text[a["id"]] = ""
            if tag == "output":
                self._last_output = a["id"]
        if tag == "body":
            self.body = a
        if tag == "div" and "change" in a.get("class", "").split():
            self._text_of = "change:" + self._last_output
            self.text[self._text_of] = ""
        if tag == "table":
            self._table = a.get("id")
            self.rows[self._table or ""] = []
            self.cells[self._table or ""] = []
        elif tag == "tr" and self._table:
            self.rows[self._table].append([])
            self.cells[self._table].append([])
        elif tag in ("td", "th") and self._table and self.rows[self._table]:
            if tag == "td":
                self.rows[self._table][-1].append(a.get("data-value", ""))
            self.cells[self._table][-1].append("")
            self._cell = self.cells[self._table][-1]

    def handle_data(self, data: str) -> None:
        if self._text_of:
            self.text[self._text_of] += data
        if self._cell is not None:
            self._cell[-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        if tag in ("td", "th"):
            self._cell = None
        if tag in ("output", "p", "span", "div") and self._text_of:
            if self._text_of.startswith("change:"):
                self.changes[self._text_of[7:]] = self.text.pop(self._text_of)
            self._text_of = None


# What a person reads, and how the page writes it: the header of a column names the API field under it.
COLUMNS: dict[str, tuple[str, str]] = {
    "Day": ("day", "text"), "Requests": ("requests", "int"), "Errors": ("errors", "int"),
    "Revenue": ("revenue", "usd"), "Customers": ("customers", "int"), "Avg ms": ("avg_latency_ms", "ms"),
    "p95 ms": ("p95_latency_ms", "ms"), "Customer": ("customer_id", "text"), "Error rate": ("error_rate", "pct"),
    "First seen": ("first_seen", "time"), "Last seen": ("last_seen", "time"), "Tool": ("tool_name", "text"),
    "Amount": ("amount", "usd"), "Paid requests": ("paid_requests", "int"), "Time": ("event_time", "time"),
    "Method": ("method", "text"), "Path": ("path", "text"), "Status": ("status_code", "text"),
    "ms": ("response_ms", "ms"), "x402": ("x402_amount", "usd"), "Request id": ("request_id", "text"),
    "Module": ("module", "text"), "Model": ("model", "text"), "Reports": ("reports", "int"),
    "Units": ("units", "int"), "Cost (USD)": ("cost", "usd"),
}
DECIMALS = {"usd": 4, "ms": 1, "pct": 2}


def shows(kind: str, text: str, value: Any) -> bool:
    """Whether ``text`` on the page is how the page shows the API's ``value`` (to the digits it shows)."""
    if kind == "text":
        return text == ("" if value is None else str(value))
    if kind == "int":
        return text == f"{int(value):,}"  # grouped as en-US, as people read it
    if kind == "time":
        return text == datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    number = text.removesuffix("%") if kind == "pct" else text
    if kind == "pct" and number == text:
        return False
    want = float(value) * (100 if kind == "pct" else 1)
    return abs(float(number) - want) <= 0.5 * 10 ** -DECIMALS[kind] + 1e-9


def assert_table_shows(dom: _Dom, table: str, rows: list[dict[str, Any]], **renamed: str) -> None:
    header, *shown = dom.cells[table]
    assert len(shown) == len(rows) > 0, (table, len(shown), len(rows))
    for i, (cells, row) in enumerate(zip(shown, rows, strict=True)):
        for label, text in zip(header, cells, strict=True):
            key, kind = COLUMNS[label]
            key = renamed.get(key, key)
            assert shows(kind, text, row[key]), (table, i, label, text, row[key])


def assert_page_shows_the_api(dom: _Dom, http: httpx.Client) -> None:
    """Every number on the page, as displayed, against the read API's JSON for the same calls."""
    def api(path: str) -> Any:
        resp = http.get(f"/v1/agents/{AGENT}/{path}", headers=AUTH)
        assert resp.status_code == 200, (path, resp.text)
        return resp.json()

    stats = api("stats")
    cards = {k: "usd" if k == "revenue" else "ms" if k == "avg_latency_ms" else "pct" if k == "error_rate" else "int"
             for k in ("total_requests", "today_requests", "week_requests", "month_requests", "revenue",
                       "paid_requests", "payment_required", "avg_latency_ms", "error_rate")}
    for key, kind in cards.items():
        assert shows(kind, dom.text[f"ov-{key}"], stats[key]), (key, dom.text[f"ov-{key}"], stats[key])

    assert_table_shows(dom, "table-daily", api("stats/daily?days=30")["days"][::-1])
    assert_table_shows(dom, "table-customers", api("customers?days=30&limit=100")["customers"])
    assert_table_shows(dom, "table-tools", api("tools?days=30&limit=100")["tools"])
    revenue = api("revenue?days=90&period=day")
    total, unit = dom.text["revenue-total"].split(" ")
    assert unit == "USDC" and shows("usd", total, revenue["total_amount"]), dom.text["revenue-total"]
    assert_table_shows(dom, "table-revenue-tools", revenue["by_tool"])
    assert_table_shows(dom, "table-revenue-customers", revenue["by_customer"])
    assert_table_shows(dom, "table-logs", api("logs?limit=100")["logs"])
    usage = api("usage?days=30&period=day")
    units, cost = dom.text["usage-total"].removesuffix(" USD").split(" units, ")
    assert shows("int", units, usage["total_units"]), dom.text["usage-total"]
    assert shows("usd", cost, usage["total_cost"]), dom.text["usage-total"]
    assert_table_shows(dom, "table-usage", usage["usage"], day="period_start")

    perf = api("performance?window=24h")
    for key in ("p50_latency_ms", "p75_latency_ms", "p90_latency_ms", "p95_latency_ms", "p99_latency_ms",
                "avg_latency_ms", "successes", "errors", "requests_per_minute"):
        kind = "int" if key in ("successes", "errors") else "ms"
        shown = dom.text[f"perf-{key}"]
        assert shows(kind, shown, perf["current"][key]), (key, shown, perf["current"][key])
        change = perf["change_pct"].get(key)
        if change is None:
            assert f"perf-{key}" not in dom.changes, key
            continue
        number, rest = dom.changes[f"perf-{key}"].split("%", 1)
        assert rest == " vs previous 24h" and number.startswith("+" if change > 0 else ("-" if change < 0 else "0"))
        assert shows("ms", number.lstrip("+"), change), (key, number, change)


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium package is required: apt-get install -y chromium"
    return path


def render(url: str) -> _Dom:
    profile = tempfile.mkdtemp(prefix="meterline-chromium-")
    try:
        out = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
             "--window-size=1280,900", "--virtual-time-budget=20000", "--dump-dom", url],
            capture_output=True, text=True, timeout=90, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    dom = _Dom()
    dom.feed(out.stdout)
    return dom


def test_page_renders_charts_with_the_right_numbers_in_chromium(live: Any) -> None:
    base, reqs, _usage, now = live
    dom = render(f"{base}/dashboard/{AGENT}?tab=speed#token={OPERATOR_TOKEN}")
    assert dom.body.get("data-state") == "ready", dom.by_id.get("status")
    assert dom.by_id["tab-speed"]["class"] == "panel active" and dom.by_id["tab-overview"]["class"] == "panel"

    traffic = sample.traffic(reqs, AGENT)
    assert dom.text["ov-total_requests"] == f"{len(traffic):,}"
    assert dom.text["ov-payment_required"] == f"{sum(r.status_code == 402 for r in traffic):,}"
    with httpx.Client(base_url=base, timeout=30) as http:
        assert_page_shows_the_api(dom, http)

    daily = dom.by_id["chart-daily"]
    assert daily["data-rendered"] == "1" and int(daily["data-series-pixels"]) > 300, daily
    print("series pixels: daily", daily["data-series-pixels"], "latency",
          dom.by_id["chart-latency"]["data-series-pixels"], "hourly", dom.by_id["chart-hourly"]["data-series-pixels"])
    points = json.loads(daily["data-points"])
    assert len(points) == 30
    first = datetime.fromisoformat(points[0]["day"]).replace(tzinfo=UTC)
    want = sample.naive_daily(reqs, AGENT, first, first + timedelta(days=30))
    assert [(p["requests"], p["errors"]) for p in points] == [(w["requests"], w["errors"]) for w in want]
    assert sum(p["requests"] for p in points) > 0

    latency = dom.by_id["chart-latency"]
    # the bars are drawn: thousands of pixels in the series colour (an empty chart has none)
    assert latency["data-rendered"] == "1" and int(latency["data-series-pixels"]) > 2000, latency
    bars = json.loads(latency["data-points"])
    assert [b["lower_ms"] for b in bars] == sample.HIST_BOUNDS
    # the window is the server's last 24 h; every sample request is at least 5 s old, none near the edge
    window = sample.traffic(reqs, AGENT, now - timedelta(hours=24), now + timedelta(hours=1))
    assert sum(b["requests"] for b in bars) == len(window)
    assert [b["requests"] for b in bars] == sample.naive_histogram(window)

    assert dom.by_id["chart-hourly"]["data-rendered"] == "1"
    assert dom.by_id["chart-revenue"]["data-rendered"] == "1"
    logs = dom.rows["table-logs"][1:]
    assert len(logs) == 100
    newest = max(traffic, key=lambda r: (r.event_time, r.request_id))
    assert logs[0][-1] == newest.request_id
    customers = dom.rows["table-customers"][1:]
    top = sample.naive_customers(reqs, AGENT, first, first + timedelta(days=30))  # the page asks for 30 days
    assert [(c[0], int(c[1])) for c in customers] == [(c["customer_id"], c["requests"]) for c in top]
    assert dom.rows["table-usage"][1:], "usage table is empty"


def test_page_without_token_asks_for_one(live: Any) -> None:
    base = live[0]
    dom = render(f"{base}/dashboard/{AGENT}")
    assert dom.body.get("data-state") == "login"
    assert "hidden" not in dom.by_id["login"] and "hidden" in dom.by_id["panels"]
    assert dom.text["login-error"] == ""
    bad = render(f"{base}/dashboard/{AGENT}#token=not-the-operator-token")
    assert bad.body.get("data-state") == "login"
    assert bad.text["login-error"] == "Unknown token"
    assert "data-points" not in bad.by_id["chart-daily"]
