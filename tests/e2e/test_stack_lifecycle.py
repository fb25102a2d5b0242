"""The life of `meterline up`: a clean first start, one /metrics, crashes, restarts and bounded stops.

The tests share one METERLINE_HOME and run in file order with three starts of the stack in all:
the first start serves the clean-output, metrics, Kafka-crash and graceful-stop tests; the
SIGKILL test starts it again, kills it mid-load and starts it a third time on the same data; the
frozen-Kafka test stops that last one. Each test starts a stack itself if it runs alone.
"""

from __future__ import annotations

import collections
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.stackproc import (
    BANNER_END,
    IngestLoad,
    StackHome,
    StackProcess,
    kill_quietly,
    pid_alive,
    wait_gone,
    wait_stored,
)

STOP_DEADLINE_S = 15.0


class Lifecycle:
    """One home for the module; ``running()`` starts the stack there unless it runs."""

    def __init__(self) -> None:
        self.home = StackHome()
        self.stack: StackProcess | None = None
        self.first_output: str | None = None

    def running(self) -> StackProcess:
        if self.stack is None or self.stack.proc.poll() is not None:
            self.stack = self.home.launch()
            if self.first_output is None:
                self.first_output = self.stack.output()
        return self.stack

    def close(self) -> None:
        if self.stack is not None and self.stack.proc.poll() is None:
            try:
                self.stack.stop(signal.SIGINT, 30)
            except Exception:  # noqa: BLE001 - cleaning up whatever state the test left
                self.stack.kill()
        for pid in self.home.child_pids().values():
            kill_quietly(pid)
        self.home.remove()


@pytest.fixture(scope="module")
def life() -> Iterator[Lifecycle]:
    lifecycle = Lifecycle()
    try:
        yield lifecycle
    finally:
        lifecycle.close()


def _recovered_after(load: IngestLoad, start: int) -> bool:
    """Refused (503) at least once since ``start``, then 20 acknowledgements in a row."""
    since = load.statuses[start:]
    return 503 in since and since[-20:] == [202] * 20 and len(since) >= 21


def _assert_stored_once(load: IngestLoad, home: StackHome) -> None:
    ids = wait_stored(home, load.prefix, len(load.acknowledged), timeout=180)
    doubled = {i: n for i, n in collections.Counter(ids).items() if n > 1}
    assert not doubled, f"{len(doubled)} entries stored more than once, e.g. {list(doubled.items())[:5]}"
    missing = load.acknowledged - set(ids)
    assert not missing, f"{len(missing)} of {len(load.acknowledged)} acknowledged entries are not stored"
    # every batch was resent until acknowledged, so nothing unacknowledged is stored either
    assert set(ids) == load.acknowledged


@pytest.mark.timeout(240)
def test_a_first_start_prints_no_error_no_traceback_no_escape_code(life: Lifecycle) -> None:
    life.running()
    text = life.first_output or ""
    assert text.rstrip().endswith(BANNER_END)
    for bad in ("ERROR", "Traceback", "\x1b", "\x08"):
        assert bad not in text, f"{bad!r} in the output of a first start:\n{text}"


@pytest.mark.timeout(240)
def test_one_scrape_shows_gateway_bridge_and_worker_series(life: Lifecycle) -> None:
    life.running()
    home = life.home
    resp = httpx.post(f"{home.gateway}/v1/ingest", headers={"Authorization": f"Bearer {home.api_key}"},
                      json={"entries": [{"request_id": f"metrics-{i}", "method": "GET", "path": "/m",
                                         "status_code": 200, "response_ms": 2.0} for i in range(5)]}, timeout=30)
    assert resp.status_code == 202, resp.text

    def scrape() -> str:
        answer = httpx.get(f"{home.gateway}/metrics", timeout=30)
        assert answer.status_code == 200
        return answer.text

    deadline = time.monotonic() + 60
    text = scrape()
    while "meterline_worker_ingest_to_stored_seconds_count 0.0" in text and time.monotonic() < deadline:
        time.sleep(0.5)  # polling the scrape until the worker stored the batch
        text = scrape()
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert [f for f, n in collections.Counter(families).items() if n > 1] == []
    assert {
        "meterline_gateway_requests_total", "meterline_gateway_kafka_produce_seconds",  # gateway
        "meterline_bridge_mqtt_messages_total",  # bridge
        "meterline_worker_consumer_lag", "meterline_worker_dedupe_hits_total",  # worker
        "meterline_worker_sink_batch_rows", "meterline_worker_sink_write_seconds",
        "meterline_worker_ingest_to_stored_seconds",
    } <= set(families)
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples['meterline_gateway_requests_total{status="202"}']) >= 1
    assert float(samples["meterline_worker_ingest_to_stored_seconds_count"]) >= 1
    assert float(samples['meterline_worker_sink_batch_rows_count{table="request_logs"}']) >= 1
    # readiness through the front is both processes': the front's ingest and the stack's worker side
    ready = httpx.get(f"{home.gateway}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["ingest"] == {"kafka": True, "keys": True} and ready.json()["stack"] == "ready"
    assert ready.json()["mqtt"] is True  # the bridge runs in the stack process


@pytest.mark.timeout(420)
def test_a_killed_kafka_is_restarted_and_every_acknowledged_entry_is_stored_once(life: Lifecycle) -> None:
    stack = life.running()
    home = life.home
    load = IngestLoad(home, "kafkakill").start()
    try:
        load.wait_for(lambda lo: len(lo.acknowledged) >= 300, 60, "the first acknowledgements")
        old = home.child_pids()["kafka"]
        mark, before = stack.mark(), len(load.statuses)
        os.kill(old, signal.SIGKILL)
        stack.wait_for_line("meterline: Kafka exited (code -9); restarting in 1s (attempt 1 of 5)", 30, mark)
        stack.wait_for_line("meterline: Kafka is running again", 150, mark)
        load.wait_for(lambda lo: _recovered_after(lo, before), 120, "ingest to recover (503s, then 202s)")
        assert home.child_pids()["kafka"] != old and pid_alive(home.child_pids()["kafka"])
    finally:
        load.stop()
    _assert_stored_once(load, home)


@pytest.mark.timeout(300)
def test_a_killed_ingest_front_is_restarted_and_every_acknowledged_entry_is_stored_once(life: Lifecycle) -> None:
    stack = life.running()
    home = life.home
    load = IngestLoad(home, "frontkill").start()
    try:
        load.wait_for(lambda lo: len(lo.acknowledged) >= 300, 60, "the first acknowledgements")
        old = stack.front_pid()
        assert old is not None
        mark, before = stack.mark(), len(load.statuses)
        os.kill(old, signal.SIGKILL)  # mid-stream: batches in flight in the front are lost to their senders
        stack.wait_for_line("meterline: Ingest front exited (code -9); restarting in 1s (attempt 1 of 5)", 30, mark)
        stack.wait_for_line("meterline: Ingest front is running again", 90, mark)
        load.wait_for(lambda lo: lo.statuses[before:].count(202) >= 20 and lo.statuses[-20:] == [202] * 20,
                      90, "ingest to resume through the new front")
        assert any(s != 202 for s in load.statuses[before:])  # the kill did interrupt ingest
        new = stack.front_pid()
        assert new is not None and new != old and pid_alive(new)
        # reads went through the stack process all along: the dashboard answers through the new front
        reply = httpx.get(f"{home.gateway}/v1/agents/demo-agent/stats",
                          headers={"Authorization": f"Bearer {home.api_key}"}, timeout=30)
        assert reply.status_code == 200, reply.text
    finally:
        load.stop()
    _assert_stored_once(load, home)


@pytest.mark.timeout(240)
def test_a_healthy_stack_stops_gracefully(life: Lifecycle) -> None:
    """The negative control of the frozen-Kafka test: a normal stop needs no watchdog."""
    stack = life.running()
    home = life.home
    children = [*home.child_pids().values(), stack.front_pid()]
    assert len(children) == 3 and None not in children
    clean_marker = home.path / "kafka" / "data" / ".kafka_cleanshutdown"
    assert not clean_marker.exists()  # Kafka removes it while it runs
    mark = stack.mark()
    code, took = stack.stop(signal.SIGINT, timeout=STOP_DEADLINE_S)
    after = "".join(stack.lines[mark:])
    assert code == 0, after
    assert took < STOP_DEADLINE_S and "took longer" not in after and "Traceback" not in after, after
    assert wait_gone(children, 5) == []
    assert clean_marker.exists(), "Kafka did not shut down cleanly"
    assert home.child_pids() == {}  # pid files removed


@pytest.mark.timeout(600)
def test_a_sigkilled_stack_starts_again_and_keeps_every_acknowledged_entry(life: Lifecycle) -> None:
    stack = life.running()
    home = life.home
    load = IngestLoad(home, "upkill").start()
    try:
        load.wait_for(lambda lo: len(lo.acknowledged) >= 300, 60, "the first acknowledgements")
        children = [*home.child_pids().values(), stack.front_pid()]
        assert None not in children
        before = len(load.statuses)
        stack.kill()  # SIGKILL, as the out-of-memory killer does
        assert wait_gone(children, 10) == [], "Kafka, Mosquitto or the ingest front outlived the killed meterline up"
        again = life.running()  # same home, same ports
        assert "already in use" not in again.output() and "Traceback" not in again.output()
        load.wait_for(lambda lo: lo.statuses[before:].count(202) >= 20 and lo.statuses[-20:] == [202] * 20,
                      180, "ingest to resume after the restart")
        assert any(s != 202 for s in load.statuses[before:])  # the kill did interrupt the load
    finally:
        load.stop()
    _assert_stored_once(load, home)


@pytest.mark.timeout(240)
def test_a_frozen_kafka_does_not_block_the_stop(life: Lifecycle) -> None:
    stack = life.running()
    home = life.home
    children = home.child_pids()
    os.kill(children["kafka"], signal.SIGSTOP)  # Kafka unreachable, and deaf to SIGTERM
    try:
        mark = stack.mark()
        code, took = stack.stop(signal.SIGTERM, timeout=STOP_DEADLINE_S)
        after = "".join(stack.lines[mark:])
        assert took < STOP_DEADLINE_S
        assert "meterline: the stop took longer than 12s; killed pid" in after, after
        assert code == 1
        assert wait_gone(list(children.values()), 5) == [], "a child of the stack survived its stop"
    finally:
        for pid in children.values():
            kill_quietly(pid)

