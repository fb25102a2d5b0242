"""CSV export of billing usage per customer app and period, shared by the read API and the CLI.

A spreadsheet opens it, so text that would run as a formula there is neutralised (CSV injection).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any, Final

USAGE_CSV_COLUMNS: Final = ("app_id", "period_start", "module", "model", "reports", "units", "cost")


def csv_value(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def usage_to_csv(rows: list[dict[str, Any]]) -> str:
    """Billing usage rows (``DashboardQueries.usage``) as CSV with a header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(USAGE_CSV_COLUMNS)
    for row in rows:
        writer.writerow([_neutralise(csv_value(row[c])) for c in USAGE_CSV_COLUMNS])
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


__all__ = ["USAGE_CSV_COLUMNS", "csv_value", "usage_to_csv"]
