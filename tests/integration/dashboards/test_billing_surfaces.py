"""One generated month, the same numbers on every surface: the read API's statement, the web page's Usage tab
(headless Chromium, the text a person reads), the CSV export of the API, and ``meterline export usage`` through
the gateway — for one app with the app's own routes, and for every app with the operator's.

The API's JSON is the source of truth; it is first checked against the naive statement of the raw events.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from meterline_cli.main import main
from tests.integration.dashboards import billing_month as gen
from tests.integration.dashboards.server import OPERATOR_TOKEN, dashboard_app, serve

APP = "app-1"
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture(scope="module")
def month() -> gen.Month:
    return gen.generate(seed=31, apps=3, reports=400, payments=240)


@pytest.fixture
def live(clickhouse: Client, month: gen.Month) -> Iterator[str]:
    gen.store(clickhouse, month)
    with serve(dashboard_app(clickhouse)) as base:
        yield base


class Tables(HTMLParser):
    """The text of every table cell, by table id (header row first); the attributes of every element with an
    id (and of the body); the text of outputs and spans with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.attrs: dict[str, dict[str, str]] = {}
        self.text: dict[str, str] = {}
        self.body: dict[str, str] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._text_of: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.attrs[a["id"]] = a
            if tag in ("output", "span"):
                self._text_of = a["id"]
                self.text[a["id"]] = ""
        if tag == "body":
            self.body = a
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self.tables[self._table][-1].append("")
            self._cell = self.tables[self._table][-1]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("output", "span"):
            self._text_of = None
        if tag in ("td", "th"):
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[-1] += data.strip()
        if self._text_of is not None:
            self.text[self._text_of] += data


def render(url: str) -> Tables:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium package is required: apt-get install -y chromium"
    profile = tempfile.mkdtemp(prefix="meterline-chromium-")
    try:
        out = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
             "--disable-extensions", f"--user-data-dir={profile}", "--window-size=1400,900",
             "--virtual-time-budget=20000", "--dump-dom", url],
            capture_output=True, text=True, timeout=90, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    dom = Tables()
    dom.feed(out.stdout)
    return dom


def who(customer: str | None) -> str:
    return customer or "(none)"


def page_rows(statement: dict[str, Any]) -> dict[str, list[list[str]]]:
    """What the Usage tab must show for ``statement``: the API's values as a person reads them — amounts and
    unit prices as the API's exact text, counts grouped by thousands, no customer as "(none)"."""
    def money(items: list[dict[str, Any]]) -> str:
        return "; ".join(f"{m['amount']} {m['currency']}" for m in items)

    return {
        "table-billing-totals": [["usage charges (price list)", t["amount"], t["currency"], ""] for t in statement[
            "totals"]] + [["x402 revenue", t["amount"], t["currency"], f"{t['paid_requests']:,}"]
                          for t in statement["x402"]["totals"]],
        "table-billing-lines": [[who(ln["customer_id"]), ln["meter"], ln["model"], ln["unit"], f"{ln['reports']:,}",
                                 f"{ln['quantity']:,}", ln["unit_price"], ln["currency"], ln["effective_from"],
                                 ln["amount"]] for ln in statement["lines"]],
        "table-billing-unpriced": [[who(ln["customer_id"]), ln["module"], ln["model"], ln["unit"] or "(no meter)",
                                    f"{ln['reports']:,}", f"{ln['quantity']:,}"] for ln in statement["unpriced"]],
        "table-billing-quantities": [[q["meter"], q["unit"] or "(no meter)", f"{q['reports']:,}", f"{q['quantity']:,}"]
                                     for q in statement["quantities"]],
        "table-billing-customers": [[who(c["customer_id"]), money(c["totals"]), money(c["x402"])]
                                    for c in statement["customers"]],
        "table-billing-x402": [[who(ln["customer_id"]), ln["currency"], f"{ln['paid_requests']:,}", ln["amount"]]
                               for ln in statement["x402"]["lines"]],
        "table-billing-prices": [[p["meter"], p["model"], p["unit"], p["unit_price"], p["currency"],
                                  p["effective_from"]] for p in statement["price_list"]["prices"]],
    }


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def csv_view(rows: list[dict[str, str]], app: str) -> dict[str, list[tuple[str, ...]]]:
    """The CSV rows of ``app`` in the shape of the API's lists."""
    mine = [r for r in rows if r["app_id"] == app]
    return {
        "lines": [(r["customer_id"], r["meter"], r["model"], r["unit"], r["reports"], r["quantity"], r["unit_price"],
                   r["currency"], r["effective_from"], r["amount"]) for r in mine if r["kind"] == "usage"],
        "unpriced": [(r["customer_id"], r["module"], r["model"], r["unit"], r["reports"], r["quantity"])
                     for r in mine if r["kind"] == "unpriced"],
        "totals": [(r["currency"], r["amount"]) for r in mine if r["kind"] == "total"],
        "x402": [(r["customer_id"], r["currency"], r["reports"], r["amount"]) for r in mine if r["kind"] == "x402"],
        "x402_totals": [(r["currency"], r["reports"], r["amount"]) for r in mine if r["kind"] == "x402_total"],
    }


def api_view(st: dict[str, Any]) -> dict[str, list[tuple[str, ...]]]:
    def text(v: Any) -> str:
        return "" if v is None else str(v)

    return {
        "lines": [(text(ln["customer_id"]), ln["meter"], ln["model"], ln["unit"], text(ln["reports"]),
                   text(ln["quantity"]), ln["unit_price"], ln["currency"], ln["effective_from"], ln["amount"])
                  for ln in st["lines"]],
        "unpriced": [(text(ln["customer_id"]), ln["module"], ln["model"], text(ln["unit"]), text(ln["reports"]),
                      text(ln["quantity"])) for ln in st["unpriced"]],
        "totals": [(t["currency"], t["amount"]) for t in st["totals"]],
        "x402": [(text(ln["customer_id"]), ln["currency"], text(ln["paid_requests"]), ln["amount"])
                 for ln in st["x402"]["lines"]],
        "x402_totals": [(t["currency"], text(t["paid_requests"]), t["amount"]) for t in st["x402"]["totals"]],
    }


def test_the_page_the_api_and_the_exports_show_the_same_statement(
        live: str, month: gen.Month, capsys: pytest.CaptureFixture[str]) -> None:
    with httpx.Client(base_url=live, headers=AUTH, timeout=30) as http:
        api = http.get(f"/v1/agents/{APP}/statement", params={"month": gen.MONTH}).json()
        api_csv = http.get(f"/v1/agents/{APP}/statement.csv", params={"month": gen.MONTH})
        every = http.get("/v1/statements", params={"month": gen.MONTH}).json()
        every_csv = http.get("/v1/statements.csv", params={"month": gen.MONTH}).text
    assert api_csv.status_code == 200 and api_csv.headers["content-type"].startswith("text/csv")
    assert 'filename="statement-app-1-2026-10.csv"' in api_csv.headers["content-disposition"]

    # the source of truth against the raw events
    naive = gen.naive_statements(month)[APP]
    assert api["month"] == gen.MONTH and api["currency"] == "USD"
    assert {(ln["customer_id"], ln["module"], ln["model"]): [ln["reports"], ln["quantity"], Decimal(ln["amount"])]
            for ln in api["lines"]} == {k: v for k, v in naive.lines.items() if v[2] is not None}
    assert Decimal(api["totals"][0]["amount"]) == naive.total
    assert api["unpriced"] and api["x402"]["lines"] and len(api["lines"]) > 20

    # the page, as a person reads it
    dom = render(f"{live}/dashboard/{APP}?tab=usage&month={gen.MONTH}#token={OPERATOR_TOKEN}")
    assert dom.body.get("data-state") == "ready" and "active" in dom.attrs["tab-usage"]["class"].split()
    assert dom.text["billing-month-label"] == gen.MONTH
    for table, rows in page_rows(api).items():
        assert dom.tables[table][1:] == rows, table
    shown = [cell for table in dom.tables.values() for row in table for cell in row]
    assert not [c for c in shown if re.search(r"\d[eE][-+]?\d", c)]  # never 2e-05

    # the CSV of the API, of the operator's every-app export, and of `meterline export usage` (CSV and JSON)
    assert csv_view(csv_rows(api_csv.text), APP) == api_view(api)
    assert {s["app_id"] for s in every["statements"]} == {"app-0", "app-1", "app-2"}
    for st in every["statements"]:
        assert csv_view(csv_rows(every_csv), st["app_id"]) == api_view(st)
    assert api_view(next(s for s in every["statements"] if s["app_id"] == APP)) == api_view(api)

    remote = ["--gateway", live, "--token", OPERATOR_TOKEN]
    assert main(["export", "usage", "--app", APP, "--period", gen.MONTH, *remote]) == 0
    assert capsys.readouterr().out == api_csv.text
    assert main(["export", "usage", "--period", gen.MONTH, *remote]) == 0  # the operator's export of every app
    assert capsys.readouterr().out == every_csv
    assert main(["export", "usage", "--app", APP, "--period", gen.MONTH, "--format", "json", *remote]) == 0
    assert api_view(json.loads(capsys.readouterr().out)) == api_view(api)


def test_statements_ask_for_credentials_and_refuse_what_they_cannot_answer(live: str) -> None:
    with httpx.Client(base_url=live, timeout=30) as http:
        assert http.get(f"/v1/agents/{APP}/statement").status_code == 401
        assert http.get("/v1/statements", headers={"Authorization": "Bearer not-the-operator"}).status_code == 401
        for path, params, code in [
            (f"/v1/agents/{APP}/statement", {"month": "2026-13"}, 400),
            (f"/v1/agents/{APP}/statement", {"month": "October"}, 422),
            (f"/v1/agents/{APP}/statement", {"month": gen.MONTH, "period": "year"}, 422),
            (f"/v1/agents/{APP}/statement.csv", {"month": gen.MONTH, "as_of": "0364-10-04T22:35:51Z"}, 400),
            ("/v1/statements", {"from": "2026-10-02T00:00:00Z", "to": "2026-10-01T00:00:00Z"}, 400),
        ]:
            resp = http.get(path, params=params, headers=AUTH)
            assert resp.status_code == code, (path, params, resp.text)
        # nothing stored before as_of: an empty statement, in the same shape
        empty = http.get(f"/v1/agents/{APP}/statement", params={"month": gen.MONTH, "as_of": "2026-01-01T00:00:00Z"},
                         headers=AUTH).json()
        assert (empty["lines"], empty["totals"], empty["x402"]["lines"]) == ([], [], [])
        assert empty["as_of"].startswith("2026-01-01T00:00:00")
