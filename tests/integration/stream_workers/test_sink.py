"""ClickHouseSink against the embedded engine: tokens make repeats no-ops, rollups included; body TTL."""

from __future__ import annotations

from typing import Any

import msgspec

from meterline.clickhouse import get_client
from stream_workers.batch import OpenBatch
from stream_workers.handlers.requests import RequestHandler
from stream_workers.sink import ClickHouseSink


def _batch(start: int, ids: list[str]) -> Any:
    value = msgspec.json.encode({"v": 1, "agent_id": "ag", "batch_id": "b", "ingested_at": 1_700_000_000_000,
                                 "entries": [{"request_id": i, "method": "GET", "path": "/", "status_code": 200,
                                              "response_ms": 5.0} for i in ids]})
    handler = RequestHandler(max_event_age_days=36500)
    batch = OpenBatch(start)
    batch.rows = [row for _, row in handler.parse(value, "t", 0, start).items]
    batch.end = start + 1
    return batch.seal("t", 0, handler.table, handler.columns)


async def test_repeated_batches_change_no_table_and_new_ones_do(clickhouse_dsn: str) -> None:
    sink = ClickHouseSink(lambda: get_client(clickhouse_dsn), body_ttl_days=7)
    assert await sink.start()
    try:
        first = _batch(0, ["a", "b"])
        for _ in range(3):
            assert await sink.write(first, abort=lambda: False)
        assert await sink.write(_batch(1, ["c"]), abort=lambda: False)
        # The same rows under another token (another offset range) are a different batch: the
        # processor's deduper, not ClickHouse, keeps those out.
        assert sink.query("SELECT count() FROM request_logs")[0][0] == 3
        assert sink.query("SELECT sum(requests) FROM agent_minute")[0][0] == 3
        assert sink.query("SELECT sum(requests) FROM agent_tool_hour_sketch")[0][0] == 3
        stored = sink.query("SELECT min(stored_at) > ingested_at FROM request_logs GROUP BY ingested_at")
        assert stored == [(True,)]  # stored_at is the insert time
        create = sink.query("SHOW CREATE TABLE request_logs")[0][0]
        assert create.count("toIntervalDay(7)") == 3  # bodies and headers kept 7 days, as configured
    finally:
        await sink.close()


async def test_inserts_run_at_the_configured_nice_value(clickhouse_dsn: str) -> None:
    """The engine runs the insert, its views included, at the sink's nice value (``os_thread_priority``): a
    probe view over the raw table records the setting its insert ran with. 0 is the negative control."""
    for nice in (10, 0):
        sink = ClickHouseSink(lambda: get_client(clickhouse_dsn), nice=nice)
        assert await sink.start()
        try:
            sink.query("DROP TABLE IF EXISTS nice_probe")
            sink.query("CREATE MATERIALIZED VIEW nice_probe ENGINE = Memory AS "
                       "SELECT toInt64(getSetting('os_thread_priority')) AS nice FROM request_logs")
            assert await sink.write(_batch(100 + nice, [f"nice-{nice}"]), abort=lambda: False)
            assert sink.query("SELECT DISTINCT nice FROM nice_probe") == [(nice,)]
        finally:
            sink.query("DROP TABLE IF EXISTS nice_probe")
            await sink.close()
