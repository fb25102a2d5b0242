"""What the gateway checks before it runs ad-hoc SQL on a ClickHouse server's user (``confine`` of a client that
is not the embedded engine): ``readonly=1`` and every limit set, or no SQL. The server is faked at the transport
boundary: a client that answers the two queries ``confine`` sends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest
from clickhouse_connect.driver.client import Client

from dashboards.sql import SqlSandboxError, confine
from dashboards.sql.limits import PINNED

PROFILE = {"max_execution_time": 30, "max_memory_usage": 536870912, "max_rows_to_read": 500000000,
           "max_bytes_to_read": 34359738368, "max_result_rows": 1000000, "max_result_bytes": 268435456, "readonly": 1}


@dataclass
class Answer:
    result_rows: list[tuple[Any, ...]]


class ServerUser:
    """A server's session as ``confine`` reads it: its settings, and the table functions it lists."""

    database = "meterline"

    def __init__(self, settings: dict[str, int]) -> None:
        self.settings = settings
        self.sent: list[str] = []

    def query(self, sql: str, **_: Any) -> Answer:
        self.sent.append(sql)
        if sql.startswith("SELECT toString(getSetting("):
            return Answer([tuple(str(self.settings[n]) for n in (*PINNED, "readonly"))])
        if "system.table_functions" in sql:
            return Answer([("file",), ("numbers",)])
        raise AssertionError(f"unexpected query {sql!r}")


def test_a_read_only_user_with_every_limit_is_used_as_it_is() -> None:
    user = ServerUser(PROFILE)
    box = confine(cast(Client, user))
    assert box.limits == {n: PROFILE[n] for n in PINNED}
    assert box.purge is None  # not the embedded engine: nothing to hand back, nothing SET
    assert not any(sql.startswith("SET") for sql in user.sent)


@pytest.mark.parametrize("change", [{"readonly": 0}, {"readonly": 2}, {"max_memory_usage": 0},
                                    {"max_execution_time": 0}, {"max_result_bytes": 0}])
def test_any_other_user_is_refused(change: dict[str, int]) -> None:
    with pytest.raises(SqlSandboxError, match="readonly=1 and every limit"):
        confine(cast(Client, ServerUser({**PROFILE, **change})))
