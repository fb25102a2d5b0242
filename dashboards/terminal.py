"""``meterline dashboard`` in a terminal: the read API's numbers, formatted by the rules the web page uses.

The read API's JSON is the source of truth; this module only formats it, in one place (``fmt_*``),
by the same rules as the page's JavaScript formatter (``dashboards/static``):

- counts: whole numbers with thousands separators (``12,345``);
- rates (error rate, shares): the ratio times 100 with two decimals and ``%`` (``5.26%``);
- changes against the previous period: signed, one decimal, ``%`` (``+3.1%``); none without a previous period;
- latency: milliseconds with one decimal and separators (``1,534.2 ms``);
- requests per minute: one decimal with separators (``1,534.2/min``);
- money: four decimals with separators, and the currency (x402 revenue is in ``USDC``).

A table cell never shows a bare float: each column says how it is formatted.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from dashboards.errors import DashboardError
from dashboards.queries import TimeRange, utcnow

#: The currency of x402 revenue (payments settle in USDC); usage costs use the price list's currency.
REVENUE_CURRENCY: Final = "USDC"
_SPARK: Final = "▁▂▃▄▅▆▇█"


def fmt_count(value: float | None) -> str:
    return f"{round(value or 0):,}"


def fmt_pct(ratio: float | None) -> str:
    return f"{(ratio or 0) * 100:.2f}%"


def fmt_change(change: float | None) -> str:
    return "n/a" if change is None else f"{change:+.1f}%"


def fmt_ms(value: float | None) -> str:
    return f"{value or 0:,.1f} ms"


def fmt_rate(per_minute: float | None) -> str:
    return f"{per_minute or 0:,.1f}/min"


def fmt_money(amount: float | None, currency: str = REVENUE_CURRENCY) -> str:
    return f"{amount or 0:,.4f} {currency}"


def fmt_time(value: Any) -> str:
    """An instant as ``2026-11-26 01:14:15 UTC`` (the page shows the same, without the zone)."""
    if not value:
        return "never"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"


def sparkline(values: Sequence[float]) -> str:
    top = max(values, default=0) or 1
    return "".join(_SPARK[min(len(_SPARK) - 1, int(v / top * (len(_SPARK) - 1) + 0.5))] if v else " " for v in values)


class Views(Protocol):
    """What the summary reads: ``DashboardQueries`` (ClickHouse) or ``RemoteViews`` (the read API)."""

    def overview(self, agent_id: str, now: datetime | None = None) -> dict[str, Any]: ...
    def daily(self, agent_id: str, days: int, now: datetime | None = None) -> list[dict[str, Any]]: ...
    def customers(self, agent_id: str, rng: TimeRange, limit: int = 100) -> list[dict[str, Any]]: ...
    def tools(self, agent_id: str, rng: TimeRange, limit: int = 100) -> list[dict[str, Any]]: ...
    def performance(self, agent_id: str, window: str = "24h", now: datetime | None = None) -> dict[str, Any]: ...
    def agents(self, agent_id: str | None, limit: int = 1000, now: datetime | None = None
               ) -> list[dict[str, Any]] | None: ...


class NoSuchAgent(DashboardError):
    """The agent asked for is not one the store (or the gateway) knows."""


def check_agent(views: Views, agent: str, overview: dict[str, Any]) -> None:
    """Raise ``NoSuchAgent`` when ``agent`` has no traffic and is not among the agents ``views`` know.

    An agent with traffic exists; one without is looked up in the agents list (the operator's: every
    agent with traffic or a key; an agent key's: its own), so a typo reads "no such agent", with the near
    names, instead of zeros, and a new agent without traffic yet gets its zeros.
    """
    if overview["total_requests"] or overview["last_request_at"]:
        return
    known = views.agents(None)
    if known is None:  # a gateway without the list: zeros are all we can say
        return
    names = [str(a["agent_id"]) for a in known]
    if agent in names:
        return
    near = difflib.get_close_matches(agent, names, n=3, cutoff=0.75)
    hint = f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""
    raise NoSuchAgent(f"no such agent {agent!r}{hint}")


#: A table column: header, key in the row, formatter, right-aligned.
Column = tuple[str, str, Callable[[Any], str], bool]


def table(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Rows as aligned text lines (header, rule, one line per row); numbers right-aligned."""
    cells = [[fmt(row.get(key)) for _, key, fmt, _ in columns] for row in rows]
    widths = [max([len(head)] + [len(r[i]) for r in cells]) for i, (head, *_) in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if right else v.ljust(w)
                         for v, w, (_, _, _, right) in zip(values, widths, columns, strict=True)).rstrip()

    return [line([c[0] for c in columns]), "  ".join("-" * w for w in widths), *(line(r) for r in cells)]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _ms_number(value: Any) -> str:  # in a column headed "... ms"
    return fmt_ms(value).removesuffix(" ms")


def _money_number(value: Any) -> str:  # in a column headed with the currency
    return fmt_money(value).removesuffix(f" {REVENUE_CURRENCY}")


def render_summary(views: Views, agent: str, days: int, window: str, now: datetime | None = None) -> str:
    """The terminal dashboard of ``agent``: overview, daily trend, speed insights, top customers and tools."""
    now = now or utcnow()
    ov = views.overview(agent, now)
    check_agent(views, agent, ov)
    daily = views.daily(agent, days, now)
    rng = TimeRange(now - timedelta(days=30), now + timedelta(seconds=1))
    customers = views.customers(agent, rng, limit=5)
    tools = views.tools(agent, rng, limit=5)
    perf = views.performance(agent, window, now)
    cur, prev, change = perf["current"], perf["previous"], perf["change_pct"]
    compared = any(v is not None for v in change.values())

    def vs(key: str) -> str:
        return f" ({fmt_change(change.get(key))})" if compared else ""

    out = [
        f"Agent {agent}   (as of {fmt_time(now)}; last request {fmt_time(ov['last_request_at'])})",
        "",
        f"Requests  total {fmt_count(ov['total_requests'])}   today {fmt_count(ov['today_requests'])}   "
        f"7 days {fmt_count(ov['week_requests'])}   30 days {fmt_count(ov['month_requests'])}",
        f"Revenue   {fmt_money(ov['revenue'])} from {fmt_count(ov['paid_requests'])} paid requests   "
        f"402 Payment Required {fmt_count(ov['payment_required'])}",
        f"Quality   avg latency {fmt_ms(ov['avg_latency_ms'])}   error rate {fmt_pct(ov['error_rate'])}",
        "",
        f"Daily requests, last {days} days ({daily[0]['day']} .. {daily[-1]['day']}):",
        f"  {sparkline([d['requests'] for d in daily])}  max {fmt_count(max(d['requests'] for d in daily))}/day",
        "",
        f"Speed insights, last {window}"
        + (f" (change vs the {window} before):" if compared else f" (no traffic in the {window} before to compare):"),
        f"  p50 {fmt_ms(cur['p50_latency_ms'])}{vs('p50_latency_ms')}   p95 {fmt_ms(cur['p95_latency_ms'])}"
        f"{vs('p95_latency_ms')}   p99 {fmt_ms(cur['p99_latency_ms'])}{vs('p99_latency_ms')}",
        f"  {fmt_count(cur['requests'])} requests{vs('requests')} = {fmt_count(cur['successes'])} ok + "
        f"{fmt_count(cur['errors'])} errors + {fmt_count(cur['payment_required'])} payment required (402)",
        f"  {fmt_rate(cur['requests_per_minute'])}{vs('requests_per_minute')}   error rate "
        f"{fmt_pct(cur['error_rate'])}" + (f" ({window} before: {fmt_pct(prev['error_rate'])})" if compared else ""),
        "",
        "Top customers (30 days):",
    ]
    out += _indent(table([("customer", "customer_id", _text, False), ("requests", "requests", fmt_count, True),
                          (f"revenue {REVENUE_CURRENCY}", "revenue", _money_number, True),
                          ("avg ms", "avg_latency_ms", _ms_number, True), ("error rate", "error_rate", fmt_pct, True)],
                         customers) if customers else ["(no requests with a customer id)"])
    out += ["", "Top tools (30 days):"]
    out += _indent(table([("tool", "tool_name", _text, False), ("requests", "requests", fmt_count, True),
                          ("p95 ms", "p95_latency_ms", _ms_number, True), ("error rate", "error_rate", fmt_pct, True),
                          (f"revenue {REVENUE_CURRENCY}", "revenue", _money_number, True)],
                         tools) if tools else ["(no requests)"])
    return "\n".join(out) + "\n"


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]


__all__ = ["REVENUE_CURRENCY", "NoSuchAgent", "check_agent", "fmt_change", "fmt_count", "fmt_money", "fmt_ms",
           "fmt_pct", "fmt_rate", "fmt_time", "render_summary", "sparkline", "table"]
