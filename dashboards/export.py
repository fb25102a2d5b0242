"""Statements as CSV, shared by the read API and ``meterline export usage``.

One file holds the statements of one or more apps for one period; every row says what it is in its
first column (``kind``), and the amounts are the statement's decimal text as they are, so the CSV
shows the same numbers as the JSON and the page:

- ``usage``: a priced line (app, end customer, period, meter/model, unit, quantity, unit price, amount);
- ``unpriced``: usage that no price covers (a module with no meter, or a model with no price that day);
- ``x402``: x402 revenue of a customer in one token (``reports`` = paid requests, ``currency`` = token);
- ``customer_total`` / ``customer_x402_total``: per end customer and currency;
- ``total`` / ``x402_total``: per app and currency. Amounts of different currencies are never added.

A spreadsheet opens it, so text that would run as a formula there is neutralised (CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any, Final

__all__ = ["STATEMENT_CSV_COLUMNS", "csv_value", "statement_rows", "statement_to_csv"]

STATEMENT_CSV_COLUMNS: Final = ("kind", "app_id", "customer_id", "period_start", "period_end", "meter", "module",
                                "model", "unit", "reports", "quantity", "unit_price", "currency", "effective_from",
                                "amount")


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def statement_rows(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The rows of the CSV of ``body``: one app's statement (its fields at the top) or ``statements``."""
    apps = body["statements"] if "statements" in body else [body]
    span = {"period_start": body["start"], "period_end": body["end"]}
    for app in apps:
        app_id = app["app_id"]
        for kind in ("lines", "unpriced"):
            for line in app[kind]:
                yield {"kind": "usage" if kind == "lines" else "unpriced", **line}
        for line in app["x402"]["lines"]:
            yield {"kind": "x402", "app_id": app_id, "customer_id": line["customer_id"], "period_start":
                   line["period_start"], "period_end": line["period_end"], "meter": "x402",
                   "reports": line["paid_requests"], "currency": line["currency"], "amount": line["amount"]}
        for customer in app["customers"]:
            who = {"app_id": app_id, "customer_id": customer["customer_id"], **span}
            for money in customer["totals"]:
                yield {"kind": "customer_total", **who, **money}
            for money in customer["x402"]:
                yield {"kind": "customer_x402_total", **who, "meter": "x402", "reports": money["paid_requests"],
                       "currency": money["currency"], "amount": money["amount"]}
        for money in app["totals"]:
            yield {"kind": "total", "app_id": app_id, **span, **money}
        for money in app["x402"]["totals"]:
            yield {"kind": "x402_total", "app_id": app_id, **span, "meter": "x402", "reports": money["paid_requests"],
                   "currency": money["currency"], "amount": money["amount"]}


def statement_to_csv(body: Mapping[str, Any]) -> str:
    """``body`` (``Billing.statement`` or ``Billing.statements``) as CSV with a header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_CSV_COLUMNS)
    for row in statement_rows(body):
        writer.writerow([_neutralise(csv_value(row.get(c))) for c in STATEMENT_CSV_COLUMNS])
    return out.getvalue()


def _neutralise(text: str) -> str:
    """Prefix text a spreadsheet would read as a formula (CSV injection); numbers stay as they are."""
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
