"""Pure helpers of the dashboard commands and the read API (no services)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dashboards.cli import check_read_only, format_table, parse_period, sparkline
from dashboards.queries import TimeRange
from meterline.errors import MeterlineError


@pytest.mark.parametrize("sql", ["SELECT 1", "  select 1;", "-- note\nWITH 1 AS x SELECT x", "SHOW TABLES",
                                 "/* c */ DESCRIBE request_logs", "EXPLAIN SELECT 1"])
def test_read_only_statements_pass(sql: str) -> None:
    assert check_read_only(sql).rstrip().endswith(("1", "x", "TABLES", "request_logs"))


@pytest.mark.parametrize("sql", ["", "  ;", "DROP TABLE t", "insert into t values (1)", "SELECT 1; SELECT 2",
                                 "OPTIMIZE TABLE t", "-- SELECT\nTRUNCATE t", "SYSTEM STOP MERGES"])
def test_writes_and_multiple_statements_are_refused(sql: str) -> None:
    with pytest.raises(MeterlineError):
        check_read_only(sql)


def test_table_aligns_numbers_right() -> None:
    text = format_table(["name", "n"], [["a", 5], ["bbb", 12345]])
    lines = text.splitlines()
    assert lines[0] == "name      n"
    assert lines[2] == "a         5" and lines[3] == "bbb   12345"


def test_sparkline_scales_to_the_maximum() -> None:
    assert sparkline([0, 1, 2, 4]) == " ▃▅█"
    assert sparkline([]) == ""


def test_periods() -> None:
    assert parse_period("2026-02") == TimeRange(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    rng = parse_period("2026-12-30..2027-01-02")
    assert rng.start == datetime(2026, 12, 30, tzinfo=UTC) and rng.end == datetime(2027, 1, 3, tzinfo=UTC)
    for bad in ("2026", "2026-13", "2026-01-05..x"):
        with pytest.raises(MeterlineError):
            parse_period(bad)
    assert TimeRange.last_days(1, datetime(2026, 5, 5, 23, 59, tzinfo=UTC)).start == datetime(2026, 5, 5, tzinfo=UTC)


# The statement CSV (and its CSV-injection guard) is tested in tests/unit/dashboards/test_billing_build.py.
