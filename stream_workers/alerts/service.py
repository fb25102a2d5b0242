"""The evaluator's loop inside a stream worker: every interval, if this worker holds the lease, one tick.

``WorkerService`` (``stream_workers/app.py``) starts an ``AlertService`` in each process that writes
ClickHouse, so ``meterline up`` (one process) and every compose ``worker`` replica run it; the lease
(``lease.py``) lets one of them act. A tick that fails (ClickHouse away, a bug) is logged and the next
interval tries again: alerts never stop the pipeline. The loop's wait is the only real-time wait; tests
drive ``AlertEvaluator.tick`` with their own clock instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Protocol

from meterline.clickhouse import get_client
from stream_workers.alerts.evaluator import AlertEvaluator
from stream_workers.alerts.lease import KafkaLease
from stream_workers.alerts.settings import AlertSettings

if TYPE_CHECKING:
    from stream_workers.settings import WorkerSettings

__all__ = ["AlertService", "Lease", "alert_service"]

log = logging.getLogger(__name__)


class Lease(Protocol):
    async def start(self) -> None: ...
    async def held(self) -> bool: ...
    async def stop(self) -> None: ...


class AlertService:
    """Runs ``evaluator.tick()`` every ``interval_s`` while ``lease.held()``."""

    def __init__(self, evaluator: AlertEvaluator, lease: Lease, interval_s: float) -> None:
        self.evaluator = evaluator
        self.lease = lease
        self.interval_s = interval_s
        self.ticks = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alerts-evaluator")

    async def _run(self) -> None:
        started = held = False
        while not self._stop.is_set():
            try:
                if not started:
                    await self.lease.start()
                    started = True
                held = await self.lease.held()
                if held:
                    report = await self.evaluator.tick()
                    self.ticks += 1
                    if report.events or report.attempts:
                        log.info("alerts: %d transitions, %d webhook attempts", len(report.events),
                                 len(report.attempts))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert evaluation failed; trying again in %.0f s", self.interval_s)
            # without the lease, look again soon: the first assignment takes a moment after start
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s if held else min(self.interval_s, 2.0))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=15)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self.lease.stop()
        await self.evaluator.close()


def alert_service(worker: WorkerSettings, settings: AlertSettings | None = None) -> AlertService | None:
    """The alert service of a worker with ``worker`` settings, or None where it does not run: alerts
    switched off, or a process that does not write ClickHouse (it may not open the embedded engine)."""
    settings = settings or AlertSettings()
    if not settings.enabled or not worker.writes_clickhouse:
        return None
    url = worker.effective_clickhouse_url()
    evaluator = AlertEvaluator(lambda: get_client(url), settings)
    lease = KafkaLease(worker.kafka_bootstrap_servers, worker.topics,
                       settings.lease_topic or f"{worker.topic_prefix}alerts-lease", f"{worker.app_id}-alerts",
                       session_timeout_s=worker.session_timeout_s,
                       max_poll_interval_s=max(300.0, 3 * settings.interval_s))
    return AlertService(evaluator, lease, settings.interval_s)
