"""``meterline sql``, ``meterline dashboard`` and ``meterline export usage`` against real chDB data.

The commands run in this process (chDB allows one process per data directory) through
``meterline_cli.main.main``, with ``CLICKHOUSE_URL`` naming the test's database.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from dashboards.cli import render_summary
from dashboards.queries import DashboardQueries
from meterline_cli.main import main
from tests.integration.dashboards import sample


@pytest.fixture
def loaded(clickhouse: Client, clickhouse_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    reqs = sample.make_requests(["agent-a", "agent-b"], 600, seed=21)
    usage = sample.make_usage(["app-1", "app-2"], 300, seed=22)
    sample.insert_requests(clickhouse, reqs)
    sample.insert_usage(clickhouse, usage)
    monkeypatch.setenv("CLICKHOUSE_URL", clickhouse_dsn)
    return clickhouse, reqs, usage


def test_sql_prints_a_table_and_binds_parameters(loaded: Any, capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    _, reqs, _ = loaded
    code = main(["sql", "SELECT agent_id, count() AS n FROM request_logs WHERE source != 'sdk_ping' "
                        "GROUP BY agent_id ORDER BY agent_id"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].split() == ["agent_id", "n"] and set(out[1]) <= {"-", " "}
    assert out[2].split() == ["agent-a", str(len(sample.traffic(reqs, "agent-a")))]
    assert out[-1] == "(2 rows)"

    # a file of its own: the views' files may carry SETTINGS, which ad-hoc SQL refuses (its limits are fixed)
    query = tmp_path / "total.sql"
    query.write_text("SELECT count() AS total_requests FROM request_logs WHERE agent_id = {agent_id:String}\n"
                     "  AND source != 'sdk_ping' AND event_time <= {now:DateTime64(3)}\n")
    code = main(["sql", "-f", str(query), "-p", "agent_id=agent-b",
                 "-p", f"now={sample.NOW:%Y-%m-%d %H:%M:%S}", "--format", "json"])
    row = json.loads(capsys.readouterr().out)
    assert code == 0 and row["total_requests"] == len(sample.traffic(reqs, "agent-b"))


@pytest.mark.parametrize("statement", [
    "DROP TABLE request_logs",
    "INSERT INTO request_logs (agent_id) VALUES ('x')",
    "SELECT 1; DROP TABLE request_logs",
    "/* hidden */ ALTER TABLE request_logs DELETE WHERE 1",
    "WITH 1 AS x INSERT INTO request_logs (agent_id) SELECT 'x'",
])
def test_sql_refuses_anything_but_reading(loaded: Any, statement: str, capsys: pytest.CaptureFixture[str]) -> None:
    client, _, _ = loaded
    before = client.query("SELECT count() FROM request_logs").result_rows[0][0]
    assert main(["sql", statement]) == 2
    assert "meterline: error:" in capsys.readouterr().err
    assert client.query("SELECT count() FROM request_logs").result_rows[0][0] == before


def test_sql_csv_output_and_row_limit(loaded: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "SELECT request_id FROM request_logs ORDER BY request_id", "--format", "csv",
                 "--max-rows", "7"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["request_id"] and len(rows) == 8


def test_dashboard_summary_shows_the_agents_numbers(loaded: Any, capsys: pytest.CaptureFixture[str]) -> None:
    client, reqs, _ = loaded
    text = render_summary(DashboardQueries(client), "agent-a", 14, "24h", now=sample.NOW)
    want = sample.naive_overview(reqs, "agent-a", sample.NOW)
    assert f"total {want['total_requests']:,}" in text
    assert f"today {want['today_requests']:,}" in text
    assert f"{want['revenue']:.4f} USDC from {want['paid_requests']:,} paid requests" in text
    top = sample.naive_customers(reqs, "agent-a", sample.NOW - timedelta(days=30), sample.NOW + timedelta(seconds=1))[0]
    assert top["customer_id"] in text.split("Top customers")[1]
    daily_line = text.split("Daily requests")[1].splitlines()[1]
    assert len(daily_line.strip().split("  max")[0]) >= 1 and "max" in daily_line
    assert main(["dashboard", "--agent", "agent-a", "--days", "7"]) == 0
    assert "Agent agent-a" in capsys.readouterr().out


def test_export_usage_gives_monthly_statement_rows_per_app(loaded: Any, tmp_dir: Any,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _, _, usage = loaded
    month = sample.NOW.strftime("%Y-%m")
    assert main(["export", "usage", "--app", "app-2", "--period", month]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    first = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    nxt = (first + timedelta(days=32)).replace(day=1)
    want = sample.naive_usage(usage, "app-2", first, nxt, "month")
    assert {r["app_id"] for r in rows} == {"app-2"}
    lines = [r for r in rows if r["kind"] == "usage"]
    # a monthly period gives monthly rows: one per (end customer, model), the month as its period
    assert {(r["period_start"], r["period_end"]) for r in lines} == {("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")}
    got = {(r["module"], r["model"]): (int(r["reports"]), int(r["quantity"])) for r in lines}
    assert got == {(k[2], k[3]): (n, units) for k, (n, units, _cost) in want.items()}
    for r in lines:  # exact: quantity × the unit price, in the price list's currency, with the unit
        assert Decimal(r["amount"]) == int(r["quantity"]) * sample.PRICES[(r["module"], r["model"])]
        assert r["currency"] == "USD" and r["unit"] in ("tokens", "characters", "seconds") and "e" not in r["amount"]
    total = next(r for r in rows if r["kind"] == "total")
    assert Decimal(total["amount"]) == sum(Decimal(r["amount"]) for r in lines)

    out = tmp_dir / "all.csv"
    assert main(["export", "usage", "--period", f"{first:%Y-%m-%d}..{sample.NOW:%Y-%m-%d}",
                 "--granularity", "month", "-o", str(out)]) == 0  # every app: the default
    monthly = [r for r in csv.DictReader(out.open()) if r["kind"] in ("usage", "unpriced")]
    assert {r["app_id"] for r in monthly} == {"app-1", "app-2"}
    end = sample.NOW.replace(hour=0, minute=0, second=0) + timedelta(days=1)
    assert sum(int(r["quantity"]) for r in monthly) == sum(u.usage for u in usage if first <= u.event_time < end)
    assert main(["export", "usage", "--period", "November"]) == 2

    assert main(["export", "usage", "--app", "app-2", "--format", "json"]) == 0  # no --period: this month
    captured = capsys.readouterr()
    assert f"period {datetime.now(UTC):%Y-%m} (the current UTC month" in captured.err
    body = json.loads(captured.out)
    assert body["app_id"] == "app-2" and body["currency"] == "USD" and body["price_list"]["prices"]


def test_commands_read_through_the_gateway_when_told(loaded: Any, clickhouse_dsn: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """What `meterline up` users get: the stack owns the embedded engine, the CLI goes over HTTP."""
    import httpx

    from meterline.clickhouse import get_client
    from tests.integration.dashboards.server import OPERATOR_TOKEN, dashboard_app, serve

    client, reqs, _ = loaded
    query = ("SELECT agent_id, count() AS n FROM request_logs WHERE source != 'sdk_ping' "
             "GROUP BY agent_id ORDER BY agent_id")
    assert main(["sql", query]) == 0
    local = capsys.readouterr().out
    month = sample.NOW.strftime("%Y-%m")
    assert main(["export", "usage", "--app", "app-1", "--period", month]) == 0
    local_csv = capsys.readouterr().out
    assert main(["export", "usage", "--period", month]) == 0
    local_every_app = capsys.readouterr().out

    with serve(dashboard_app(client, sql_client=get_client(clickhouse_dsn))) as base:
        remote = ["--gateway", base, "--token", OPERATOR_TOKEN]
        assert main(["sql", query, *remote]) == 0
        assert capsys.readouterr().out == local
        assert main(["export", "usage", "--app", "app-1", "--period", month, *remote]) == 0
        assert capsys.readouterr().out == local_csv
        assert main(["export", "usage", "--period", month, *remote]) == 0  # the operator's export of every app
        assert capsys.readouterr().out == local_every_app
        assert main(["dashboard", "--agent", "agent-b", *remote]) == 0
        out = capsys.readouterr().out
        assert f"total {len(sample.traffic(reqs, 'agent-b')):,}" in out

        assert main(["sql", "DROP TABLE request_logs", *remote]) == 2  # refused before sending
        with httpx.Client(base_url=base) as http:
            auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
            sneaky = http.post("/v1/sql", json={"query": "WITH 1 AS x INSERT INTO request_logs (agent_id) SELECT 'x'"},
                               headers=auth)
            assert sneaky.status_code == 400  # the engine's readonly refuses what the keyword check let through
            assert http.post("/v1/sql", json={"query": "SELECT 1"}).status_code == 401
            ok = http.post("/v1/sql", json={"query": "SELECT {n:UInt8} + 1 AS v", "params": {"n": "41"}}, headers=auth)
            assert ok.json() == {"columns": ["v"], "rows": [[42]], "truncated": False}
        assert main(["sql", "SELECT 1", "--gateway", base, "--token", "wrong-token-wrong-token"]) == 2
        assert "401" in capsys.readouterr().err
    assert client.query("SELECT count() FROM request_logs WHERE agent_id = 'x'").result_rows[0][0] == 0
