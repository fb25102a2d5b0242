"""Statements people can invoice from: stored usage priced with the price list, as exact decimals.

The store keeps quantities (integers); prices live in ``schemas/prices.toml``. A statement is computed
when it is asked for: the quantities per (app, end customer, segment, module, model) come from
``schemas/queries/statement_usage.sql``, each segment lies inside one period and one price version,
and every line is ``quantity × unit price`` in ``Decimal``. The x402 revenue of the same apps and
customers comes from ``statement_x402.sql``, in the payment's token. Amounts of different currencies
are never added: totals are per currency. Only rows stored before ``as_of`` count, so a statement
re-run with the same ``as_of`` has the same lines. The format is described in ``docs/billing.md``.

Every decimal leaves as text (``decimal_text``): JSON numbers would be read back as binary floats.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from dashboards.errors import DashboardError
from dashboards.queries import EARLIEST, LATEST, DashboardQueries, TimeRange, utcnow, whole_ms
from schemas.prices import Price, PriceList, price_list

__all__ = ["GRANULARITIES", "Billing", "StatementRequest", "build_statements", "cut_points", "decimal_text",
           "period_of", "price_list_json"]

log = logging.getLogger(__name__)

GRANULARITIES: Final = ("day", "week", "month")
#: Where the prices come from, as the statement states it.
PRICE_SOURCE: Final = "schemas/prices.toml"
_MS: Final = timedelta(milliseconds=1)


def decimal_text(value: Decimal) -> str:
    """``value`` as plain decimal text: no exponent, no trailing zeros (``0.0045``, ``120``, ``0``)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


@dataclass(frozen=True)
class StatementRequest:
    """What to put on a statement: a range, one app or every app (``''``), one end customer or all."""

    rng: TimeRange
    app_id: str = ""
    #: the end customer to keep (``''`` is usage that names none); None keeps every customer
    customer: str | None = None
    #: rows per day, week (from Monday) or month inside the range; None: one period, the whole range
    granularity: str | None = None
    #: one line per end customer (statements), or lines of the whole app (the usage view)
    by_customer: bool = True
    #: only rows stored before this count (default: now)
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        if self.granularity is not None and self.granularity not in GRANULARITIES:
            raise DashboardError(f"period must be one of {', '.join(GRANULARITIES)}")
        if self.as_of is not None:
            as_of = self.as_of.replace(tzinfo=UTC) if self.as_of.tzinfo is None else self.as_of.astimezone(UTC)
            if not EARLIEST <= as_of <= LATEST:
                raise DashboardError(f"as_of must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
            object.__setattr__(self, "as_of", as_of)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def _period_floor(moment: datetime, granularity: str) -> datetime:
    day = moment.date()
    if granularity == "week":
        day -= timedelta(days=day.weekday())
    elif granularity == "month":
        day = day.replace(day=1)
    return _midnight(day)


def _next_period(start: datetime, granularity: str) -> datetime:
    if granularity == "day":
        return start + timedelta(days=1)
    if granularity == "week":
        return start + timedelta(days=7)
    return _midnight((start.date() + timedelta(days=32)).replace(day=1))


def period_of(moment: datetime, granularity: str | None, rng: TimeRange) -> tuple[datetime, datetime]:
    """The period (within ``rng``) that ``moment`` falls in."""
    if granularity is None:
        return rng.start, rng.end
    start = _period_floor(moment, granularity)
    return max(start, rng.start), min(_next_period(start, granularity), rng.end)


def cut_points(rng: TimeRange, granularity: str | None, prices: PriceList) -> list[datetime]:
    """Instants strictly inside ``rng`` where a period starts or a price changes, ascending."""
    cuts = {_midnight(day) for day in prices.changes_between(rng.start.date(), (rng.end - _MS).date())}
    if granularity is not None:
        at = _next_period(_period_floor(rng.start, granularity), granularity)
        while at < rng.end:
            cuts.add(at)
            at = _next_period(at, granularity)
    return sorted(c for c in cuts if rng.start < c < rng.end)


def price_list_json(prices: PriceList) -> dict[str, Any]:
    """The price table as the statements state it: meters with units, prices with currency and dates."""
    return {
        "currency": prices.currency, "source": PRICE_SOURCE,
        "meters": [{"meter": m.name, "unit": m.unit, "description": m.description} for m in prices.meters.values()],
        "prices": [{"meter": p.meter, "model": p.model, "unit": prices.meters[p.meter].unit,
                    "unit_price": decimal_text(p.unit_price), "currency": prices.currency,
                    "effective_from": p.effective_from} for p in prices.prices],
    }


def _money(amounts: Mapping[str, Decimal]) -> list[dict[str, Any]]:
    return [{"currency": c, "amount": decimal_text(a)} for c, a in sorted(amounts.items())]


class _App:
    """One app's statement while it is being added up."""

    def __init__(self) -> None:
        self.usage: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
        self.x402: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, Decimal(0)])


def build_statements(req: StatementRequest, usage_rows: Iterable[Mapping[str, Any]],
                     x402_rows: Iterable[Mapping[str, Any]], prices: PriceList, as_of: datetime) -> dict[str, Any]:
    """The statements of ``req`` from the rows of the two statement queries (``segment`` as they were cut)."""
    rng = req.rng
    bounds = [rng.start, *cut_points(rng, req.granularity, prices), rng.end]
    apps: dict[str, _App] = defaultdict(_App)
    for row in usage_rows:
        seg = bounds[row["segment"]]
        customer = row["customer_id"] if req.by_customer else None
        price = prices.price_for(row["module"], row["model"], seg.date())
        key = (customer, *period_of(seg, req.granularity, rng), row["module"], row["model"], price)
        acc = apps[row["app_id"]].usage[key]
        acc[0] += int(row["reports"])
        acc[1] += int(row["quantity"])
    for row in x402_rows:
        seg = bounds[row["segment"]]
        customer = row["customer_id"] if req.by_customer else None
        acc2 = apps[row["app_id"]].x402[(customer, *period_of(seg, req.granularity, rng), row["token"])]
        acc2[0] += int(row["paid_requests"])
        acc2[1] += Decimal(row["amount"])
    return {
        "start": rng.start, "end": rng.end, "granularity": req.granularity, "as_of": as_of,
        "customer_id": req.customer, "currency": prices.currency, "price_list": price_list_json(prices),
        "statements": [_statement(app_id, apps[app_id], prices) for app_id in sorted(apps)],
    }


def _sort_key(value: Any) -> Any:
    return (value is not None, value if value is not None else "")


def _statement(app_id: str, app: _App, prices: PriceList) -> dict[str, Any]:
    lines: list[dict[str, Any]] = []
    unpriced: list[dict[str, Any]] = []
    totals: dict[str, Decimal] = defaultdict(Decimal)
    by_customer: dict[Any, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    quantities: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
    order = sorted(app.usage.items(), key=lambda kv: (_sort_key(kv[0][0]), kv[0][1], kv[0][3], kv[0][4],
                                                      kv[0][5].effective_from if kv[0][5] else date.min))
    for (customer, p_start, p_end, module, model, price), (reports, quantity) in order:
        meter = prices.meter_for(module, model)
        line = {"app_id": app_id, "customer_id": customer, "period_start": p_start, "period_end": p_end,
                "meter": meter.name if meter else None, "module": module, "model": model,
                "unit": meter.unit if meter else None, "reports": reports, "quantity": quantity}
        line |= _priced(price, quantity, prices.currency)
        (lines if price else unpriced).append(line)
        if price:
            amount = quantity * price.unit_price
            totals[prices.currency] += amount
            by_customer[customer][prices.currency] += amount
        q = quantities[(meter.name if meter else module, meter.unit if meter else None)]
        q[0] += reports
        q[1] += quantity
    x402_lines = []
    x402_totals: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    x402_by_customer: dict[Any, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(lambda: [0, Decimal(0)]))
    for (customer, p_start, p_end, token), (paid, amount) in sorted(
            app.x402.items(), key=lambda kv: (_sort_key(kv[0][0]), kv[0][1], kv[0][3])):
        x402_lines.append({"app_id": app_id, "customer_id": customer, "period_start": p_start, "period_end": p_end,
                           "currency": token, "paid_requests": paid, "amount": decimal_text(amount)})
        for acc in (x402_totals[token], x402_by_customer[customer][token]):
            acc[0] += paid
            acc[1] += amount
    customers = sorted(set(by_customer) | set(x402_by_customer) | {k[0] for k in app.usage}, key=_sort_key)
    return {
        "app_id": app_id, "lines": lines, "unpriced": unpriced,
        "quantities": [{"meter": m, "unit": u, "reports": r, "quantity": q}
                       for (m, u), (r, q) in sorted(quantities.items(), key=lambda kv: kv[0][0])],
        "totals": _money(totals),
        "customers": [{"customer_id": c, "totals": _money(by_customer.get(c, {})),
                       "x402": _x402_money(x402_by_customer.get(c, {}))} for c in customers if c is not None],
        "x402": {"lines": x402_lines, "totals": _x402_money(x402_totals)},
    }


def _priced(price: Price | None, quantity: int, currency: str) -> dict[str, Any]:
    if price is None:
        return {"unit_price": None, "currency": None, "effective_from": None, "amount": None}
    return {"unit_price": decimal_text(price.unit_price), "currency": currency,
            "effective_from": price.effective_from, "amount": decimal_text(quantity * price.unit_price)}


def _x402_money(sums: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    return [{"currency": token, "paid_requests": paid, "amount": decimal_text(amount)}
            for token, (paid, amount) in sorted(sums.items())]


class Billing:
    """Statements over one ClickHouse client, priced with one price list (default ``schemas/prices.toml``)."""

    def __init__(self, client: Client, prices: PriceList | None = None) -> None:
        self.views = DashboardQueries(client)
        self.prices = prices or price_list()

    def statements(self, req: StatementRequest) -> dict[str, Any]:
        """Every app's statement for ``req`` (one app's when ``req.app_id`` is set), as JSON-ready dicts."""
        as_of = whole_ms(req.as_of, up=True) if req.as_of else utcnow() + _MS  # rows stored up to now
        cuts = [int(c.timestamp() * 1000) for c in cut_points(req.rng, req.granularity, self.prices)]
        params = {"start": req.rng.start, "end": req.rng.end, "as_of": as_of, "cuts": cuts,
                  "one_customer": int(req.customer is not None), "customer": req.customer or ""}
        usage = self.views.run("statement_usage", {**params, "app_id": req.app_id})
        x402 = self.views.run("statement_x402", {**params, "agent_id": req.app_id})
        log.debug("statement %s..%s app=%r: %d usage rows, %d x402 rows", req.rng.start, req.rng.end, req.app_id,
                  len(usage), len(x402))
        return build_statements(req, usage, x402, self.prices, as_of)

    def statement(self, req: StatementRequest) -> dict[str, Any]:
        """The statement of the one app ``req.app_id`` (empty when it has no usage), in its envelope."""
        if not req.app_id:
            raise DashboardError("a single statement needs an app id")
        out = self.statements(req)
        found = out.pop("statements")
        return out | (found[0] if found else _statement(req.app_id, _App(), self.prices))
