"""Grafana dashboard built from the same SQL files (``python -m dashboards.grafana``).

Writes ``deploy/grafana/dashboards/meterline.json`` for the optional ``grafana`` profile of
docker-compose.yml. Each panel's SQL is a file of ``schemas/queries`` with its server-side
parameters replaced by Grafana's: the ``agent_id`` dashboard variable, the time picker
(``$__fromTime`` / ``$__toTime`` of the ClickHouse data source plugin) and fixed limits. A test
checks the committed JSON is what this module generates, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Final

from dashboards.queries import load_sql

DATASOURCE: Final = {"type": "grafana-clickhouse-datasource", "uid": "meterline-clickhouse"}
OUTPUT: Final = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards" / "meterline.json"
_FROM, _TO = "$__fromTime", "$__toTime"
_SUBSTITUTIONS: Final = {
    "agent_id": "'${agent_id}'",
    "app_id": "'${agent_id}'",
    "start": _FROM,
    "end": _TO,
    "now": "now64(3)",
    "prev_start": f"({_FROM} - toIntervalSecond(dateDiff('second', {_FROM}, {_TO})))",
    "limit": "100",
    "period": "'day'",
    # the page's filters and the logs' search and cursor: none on the Grafana board (its own variables pick)
    "customer": "''",
    "tool": "''",
    "status": "''",
    "protocol": "''",
    "q": "''",
    "before_time": _TO,
    "before_id": "''",
}
_PARAM = re.compile(r"\{(\w+):[^{}]+\}")
#: (title, query file, panel type, width, height)
PANELS: Final = (
    ("Overview", "overview", "table", 24, 5),
    ("Daily trend", "daily", "timeseries", 24, 8),
    ("Customers (top callers)", "customers", "table", 12, 9),
    ("Tools", "tools", "table", 12, 9),
    ("Speed insights", "performance", "table", 24, 5),
    ("Latency distribution", "latency_histogram", "barchart", 12, 8),
    ("Hourly trend", "performance_hourly", "timeseries", 12, 8),
    ("Revenue per day", "revenue", "timeseries", 12, 8),
    ("Revenue by tool", "revenue_by_tool", "table", 6, 8),
    ("Revenue per customer", "revenue_by_customer", "table", 6, 8),
    ("Billing usage", "usage", "table", 24, 8),
    ("Recent requests", "logs", "table", 24, 10),
)


def grafana_sql(name: str) -> str:
    """The query file with Grafana variables and macros in place of server-side parameters."""
    def replace(match: re.Match[str]) -> str:
        return _SUBSTITUTIONS[match.group(1)]

    return _PARAM.sub(replace, load_sql(name)).strip()


def _panel(index: int, title: str, query: str, kind: str, x: int, y: int, w: int, h: int) -> dict[str, Any]:
    return {
        "id": index + 1, "title": title, "type": kind, "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [{"refId": "A", "datasource": DATASOURCE, "editorType": "sql", "format": 1,
                     "queryType": "table", "rawSql": grafana_sql(query)}],
        "options": {}, "fieldConfig": {"defaults": {}, "overrides": []},
    }


def build_dashboard() -> dict[str, Any]:
    panels, x, y, row_h = [], 0, 0, 0
    for index, (title, query, kind, w, h) in enumerate(PANELS):
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        panels.append(_panel(index, title, query, kind, x, y, w, h))
        x, row_h = x + w, max(row_h, h)
    return {
        "uid": "meterline-agent", "title": "Meterline — agent", "schemaVersion": 39, "version": 1,
        "editable": True, "time": {"from": "now-30d", "to": "now"}, "refresh": "1m",
        "tags": ["meterline"],
        "templating": {"list": [{
            "name": "agent_id", "label": "Agent", "type": "query", "datasource": DATASOURCE,
            "query": "SELECT DISTINCT agent_id FROM agent_minute ORDER BY agent_id",
            "definition": "SELECT DISTINCT agent_id FROM agent_minute ORDER BY agent_id",
            "refresh": 2, "current": {}, "options": [],
        }]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build_dashboard(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    """Write the dashboard JSON (or print it with ``-``)."""
    text = render()
    if sys.argv[1:] == ["-"]:
        sys.stdout.write(text)
    else:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT}")
    return 0


__all__ = ["PANELS", "build_dashboard", "grafana_sql", "render"]

if __name__ == "__main__":
    raise SystemExit(main())
