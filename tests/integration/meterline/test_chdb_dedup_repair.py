"""A worker killed inside the embedded engine's commit: its retried batch is stored, once (real chDB).

The engine writes a block's id to the table's deduplication log just before it renames the part into
place. ``strace`` kills the inserting process at the Nth ``rename`` of its insert (the raw table's part,
then each rollup's), a chosen point; a second process re-sends the same batch with the same token, as
the worker does after a crash, through the sink's own insert. The negative control opens the engine
without ``meterline.chdb_repair`` and shows the loss; with it, the raw table and every rollup hold
the batch exactly once, whichever commit the kill interrupted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ROWS = 1000
TABLES = ("request_logs", "agent_minute", "agent_tool_hour_sketch", "agent_day_sketch",
          "agent_tool_day_sketch", "agent_customer_day", "agent_tool_customer_day")
# agent_day_sketch is fed by a view over a view's table over another's; agent_customer_day by a view over a view

pytestmark = pytest.mark.skipif(shutil.which("strace") is None,
                                reason="strace is not installed (.ci/setup installs it)")

CHILD = textwrap.dedent("""
    import sys
    import clickhouse_connect
    from meterline.clickhouse import get_client
    from meterline.migrations import apply_migrations
    from schemas.events import RequestBatchRecord
    from stream_workers.batch import OpenBatch
    from stream_workers.enrich import REQUEST_COLUMNS, request_row
    from stream_workers.sink import ClickHouseSink
    import msgspec

    dsn, mode = sys.argv[1], sys.argv[2]
    if mode in ("bare", "held"):  # the engine opened as clickhouse-connect opens it, without the repair
        client = clickhouse_connect.get_client(dsn="chdb://" + dsn.removeprefix("chdb://").split("?")[0])
        client.database = "meterline"
    else:
        client = get_client(dsn)
    if mode == "held":  # the engine open (bare), then the repair asked for the directory it holds
        from pathlib import Path
        from meterline.chdb_repair import repair_deduplication_logs
        client.query("SELECT 1")
        print("repaired", repair_deduplication_logs(Path(dsn.removeprefix("chdb://").split("?")[0])))
        sys.exit(0)
    if mode == "migrate":
        apply_migrations(client)
        # one part per table: no merge left for the next process to start, whose renames would come before
        # the insert's and move the point the kill is aimed at (schema_migrations holds a part per migration)
        for (table,) in client.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                     "AND engine LIKE '%%MergeTree'").result_rows:
            client.command(f"OPTIMIZE TABLE `{table}` FINAL")
        sys.exit(0)
    if mode == "count":
        print(",".join(str(client.query(q).result_rows[0][0]) for q in (
            "SELECT count() FROM request_logs", "SELECT sum(requests) FROM agent_minute",
            "SELECT sum(requests) FROM agent_tool_hour_sketch",
            "SELECT sum(requests) FROM agent_day_sketch", "SELECT sum(requests) FROM agent_tool_day_sketch",
            "SELECT sum(requests) FROM agent_customer_day", "SELECT sum(requests) FROM agent_tool_customer_day")))
        sys.exit(0)
    now = 1795668000000
    record = msgspec.convert({"v": 1, "agent_id": "a1", "batch_id": "b1", "ingested_at": now, "entries": [
        {"request_id": f"r{i}", "method": "GET", "path": "/p", "status_code": 200, "response_ms": 1.0,
         "customer_id": "c", "tool_name": "t"} for i in range(%(rows)d)]}, RequestBatchRecord)
    batch = OpenBatch(0)
    batch.end = 1
    batch.rows = [request_row(record, e, now) for e in record.entries]
    sink = ClickHouseSink(lambda: client)
    sink._insert(batch.seal("requests", 0, "request_logs", REQUEST_COLUMNS))  # the worker's insert, its token
    print("stored")
""") % {"rows": ROWS}


def _child(dsn: str, mode: str, *, kill_at_rename: int | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", CHILD, dsn, mode]
    if kill_at_rename is not None:  # SIGKILL the process at its Nth rename(2): a part's commit
        argv = ["strace", "-f", "-o", "/dev/null", "-e", "trace=rename",
                "-e", f"inject=rename:signal=SIGKILL:when={kill_at_rename}", *argv]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def _counts(dsn: str) -> dict[str, int]:
    done = _child(dsn, "count")
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(zip(TABLES, (int(v) for v in done.stdout.strip().split(",")), strict=True))


def _killed_insert(tmp_dir: Path, rename: int) -> str:
    dsn = f"chdb://{tmp_dir / 'chdb'}?database=meterline"
    assert _child(dsn, "migrate").returncode == 0
    killed = _child(dsn, "insert", kill_at_rename=rename)
    assert killed.returncode != 0 and "stored" not in killed.stdout  # killed inside the insert
    return dsn


def test_without_the_repair_a_batch_killed_at_its_commit_is_lost_on_retry(tmp_dir: Path) -> None:
    """The negative control: the window is real, and a plain retry does not close it."""
    dsn = _killed_insert(tmp_dir, rename=1)  # the raw table's part: its id logged, the part not renamed
    retried = _child(dsn, "bare")
    assert retried.returncode == 0 and "stored" in retried.stdout, retried.stderr[-2000:]
    counts = _counts(dsn)  # (this open repairs, but the loss has already happened)
    assert counts["request_logs"] == 0, counts  # the retry was skipped as a duplicate
    assert counts["agent_minute"] == ROWS  # the rollups took the retry


# the rollups' commits come one by one after the raw table's: 8 in all, the last a view fed by a view
@pytest.mark.parametrize("rename", [1, 2, 8], ids=["raw", "rollup", "last-rollup"])
def test_a_batch_killed_at_any_commit_is_stored_once_on_retry(tmp_dir: Path, rename: int) -> None:
    dsn = _killed_insert(tmp_dir, rename)
    retried = _child(dsn, "insert")
    assert retried.returncode == 0 and "stored" in retried.stdout, retried.stderr[-2000:]
    assert "whose part was never committed" in retried.stderr  # the repair ran, for the table killed in
    assert _counts(dsn) == dict.fromkeys(TABLES, ROWS)  # nothing lost, nothing doubled
    again = _child(dsn, "insert")  # and a later re-send of the same batch is still a duplicate
    assert again.returncode == 0 and "whose part was never committed" not in again.stderr
    assert _counts(dsn) == dict.fromkeys(TABLES, ROWS)


def test_a_directory_an_engine_holds_is_left_alone(tmp_dir: Path) -> None:
    """The logs are the engine's while it runs: a repair then could drop the id of a commit in flight."""
    dsn = _killed_insert(tmp_dir, rename=1)
    held = _child(dsn, "held")
    assert held.returncode == 0 and "repaired 0" in held.stdout, held.stdout + held.stderr[-2000:]
    assert "whose part was never committed" not in held.stderr
    retried = _child(dsn, "insert")  # once nobody holds it, the repair runs
    assert "whose part was never committed" in retried.stderr
    assert _counts(dsn) == dict.fromkeys(TABLES, ROWS)
