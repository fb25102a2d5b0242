"""Reading the dashboard page as a person does: the text of outputs, cards and table cells, checked against
the read API's JSON for the same calls (the page's one formatting rule per kind of number)."""

from __future__ import annotations

from datetime import datetime
from html.parser import HTMLParser
from typing import Any


class Dom(HTMLParser):
    """Attributes of every element with an id; the text in outputs, spans and paragraphs with an id, in table
    cells (``cells``, by table id) and in the change line under each card (``changes``, by the card's output
    id); cells' data-value (``rows``)."""

    def __init__(self, html: str) -> None:
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
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.by_id[a["id"]] = a
            if tag in ("output", "p", "span", "code"):
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
        if tag in ("output", "div", "code") and self._text_of:
            if self._text_of.startswith("change:"):
                self.changes[self._text_of[7:]] = self.text.pop(self._text_of)
            self._text_of = None
        elif tag in ("p", "span") and self._text_of and not self._text_of.startswith("change:"):
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
    "Units": ("units", "int"), "Cost (USD)": ("cost", "usd"), "Period": ("period_start", "text"),
    "402": ("payment_required", "int"), "Previous period": ("previous_requests", "int"),
    "Agent": ("agent_id", "text"), "Last 24 h": ("recent_requests", "int"), "Revenue (USDC)": ("revenue", "usd"),
    "Header": ("name", "text"), "Value": ("value", "text"),
}
DECIMALS = {"usd": 4, "ms": 1, "pct": 2}


def shows(kind: str, text: str, value: Any) -> bool:
    """Whether ``text`` on the page is how the page shows the API's ``value`` (to the digits it shows)."""
    if kind == "text":
        return text == ("" if value is None else str(value))
    if kind == "int":
        return text == f"{int(value):,}"  # grouped as en-US, as people read it
    if kind == "time":
        return text == ("" if value is None else datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S"))
    number = text.removesuffix("%") if kind == "pct" else text
    if kind == "pct" and number == text:
        return False
    want = float(value) * (100 if kind == "pct" else 1)
    return abs(float(number) - want) <= 0.5 * 10 ** -DECIMALS[kind] + 1e-9


def assert_table_shows(dom: Dom, table: str, rows: list[dict[str, Any]], *, allow_empty: bool = False,
                       skip: tuple[str, ...] = (), **renamed: str) -> None:
    """Every cell of ``table`` is the API's field under its column header, row by row."""
    header, *shown = dom.cells[table]
    assert len(shown) == len(rows) and (allow_empty or rows), (table, len(shown), len(rows))
    for i, (cells, row) in enumerate(zip(shown, rows, strict=True)):
        for label, text in zip(header, cells, strict=True):
            if label in skip:
                continue
            key, kind = COLUMNS[label]
            key = renamed.get(key, key)
            if kind == "text" and row[key] == "" and text == "(none)":
                continue
            assert shows(kind, text, row[key]), (table, i, label, text, row[key])
