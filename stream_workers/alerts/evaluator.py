"""The alert evaluator: one ``tick`` evaluates every rule, records the transitions, delivers what is due.

A tick, at the clock's ``now``:

1. reads every rule with its state (its last transition in ``alert_events``: nothing is kept in memory, so
   a restarted evaluator neither fires again nor forgets);
2. reads each rule's numbers from the rollups over its window (``decide.py`` says what they mean) and, when
   the rule moves from ``ok`` to ``firing`` or back, inserts the event under an id derived from (agent,
   rule, seq), with its JSON body: the outbox;
3. sends every event that is due (never attempted, or a retry whose time has come), logging each attempt
   with its status, error, latency and — after a failure — when the next one is due, or ``failed`` once
   ``max_attempts`` are spent.

The clock is injected (tests drive time with it and call ``tick`` directly); ClickHouse calls run on one
thread of their own. ``service.py`` calls ``tick`` every interval while this worker holds the lease.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import httpx
from clickhouse_connect.driver.client import Client

from schemas.alerts import MAX_BODY_BYTES, decimal_text, event_body, event_id
from schemas.prices import price_list
from stream_workers.alerts import decide, store
from stream_workers.alerts.settings import AlertSettings
from stream_workers.alerts.webhooks import forbidden_destination, next_delay, send

__all__ = ["AlertEvaluator", "Clock", "TickReport", "utc_now"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]
#: How far back undelivered events are looked for (longer than any retry schedule the settings allow).
_OUTBOX_DAYS: Final = 8


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TickReport:
    """What one tick did: the events it wrote and the attempts it made (outcomes by event id)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0


class AlertEvaluator:
    """Evaluates the rules stored in ClickHouse and delivers their events (see the module's docstring)."""

    def __init__(self, client_factory: Callable[[], Client], settings: AlertSettings | None = None, *,
                 clock: Clock = utc_now, rng: random.Random | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, close_client: bool = True) -> None:
        self.settings = settings or AlertSettings()
        self.clock = clock
        self._factory = client_factory
        self._client: Client | None = None
        self._close_client = close_client
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts-clickhouse")
        self._http = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _db(self) -> Client:
        if self._client is None:
            self._client = self._factory()
        return self._client

    async def close(self) -> None:
        await self._http.aclose()
        client, self._client = self._client, None
        if client is not None and self._close_client:
            await self._call(client.close)
        self._executor.shutdown(wait=False)

    async def tick(self) -> TickReport:
        """Evaluate every rule at the clock's now, then deliver what is due."""
        now = self.clock()
        report = TickReport()
        await self._evaluate(now, report)
        await self._deliver(now, report)
        return report

    # --- evaluation -------------------------------------------------------------------------------

    def _evaluate_sync(self, now: datetime, report: TickReport) -> None:
        client = self._db()
        prices = price_list()
        for stored in store.rules(client):
            rule = stored.rule
            try:
                if rule.kind == "usage":
                    start, end = decide.period_bounds(now, rule.period)
                    reading = decide.read_usage(rule, store.read_usage(client, rule, start, end), prices, start, end)
                else:
                    start, end = decide.window_bounds(now, rule.window_s, self.settings.lag_s)
                    reading = decide.read_requests(rule, store.read_requests(client, rule, start, end), start, end)
            except Exception:  # one broken rule must not keep the others from being evaluated
                log.exception("alert rule %s of agent %s could not be evaluated", rule.rule_id, rule.agent_id)
                report.errors += 1
                continue
            change = decide.transition(stored.state, reading)
            if change is None:
                continue
            seq = stored.seq + 1
            eid = event_id(rule.agent_id, rule.rule_id, seq)
            value = None if reading.value is None else decimal_text(reading.value)
            body = event_body(event_id=eid, transition=change, created_at=now, rule=rule, value=value,
                              window_start=reading.window_start, window_end=reading.window_end)
            row = [rule.agent_id, rule.rule_id, seq, eid, rule.kind, change, value or "",
                   decimal_text(rule.threshold), reading.window_start, reading.window_end, now, rule.webhook_url,
                   body]
            store.insert_event(client, row)
            log.warning("alert %s: rule %s of agent %s (%s) value %s threshold %s", change, rule.rule_id,
                        rule.agent_id, rule.kind, value, decimal_text(rule.threshold))
            report.events.append({"event_id": eid, "agent_id": rule.agent_id, "rule_id": rule.rule_id, "seq": seq,
                                  "transition": change, "value": value})

    async def _evaluate(self, now: datetime, report: TickReport) -> None:
        await self._call(self._evaluate_sync, now, report)

    # --- delivery ---------------------------------------------------------------------------------

    async def _deliver(self, now: datetime, report: TickReport) -> None:
        client = self._db()
        due = await self._call(store.pending, client, now, now - timedelta(days=_OUTBOX_DAYS))
        if not due:
            return
        secrets = {(r.rule.agent_id, r.rule.rule_id): r.secret for r in await self._call(store.rules, client)}
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(item: store.Pending) -> None:
            async with gate:
                await self._attempt(item, secrets.get((item.agent_id, item.rule_id)), now, report)

        await asyncio.gather(*(one(item) for item in due))

    async def _attempt(self, item: store.Pending, secret: str | None, now: datetime, report: TickReport) -> None:
        s = self.settings
        attempt = item.attempts + 1
        if secret is None:  # the rule was deleted after the event: nothing to sign with, nobody to tell
            status, error, latency, outcome = 0, "the rule was deleted", 0.0, "failed"
        elif len(item.body.encode()) > MAX_BODY_BYTES:
            status, error, latency, outcome = 0, f"body over {MAX_BODY_BYTES} bytes", 0.0, "failed"
        elif not s.allow_private_urls and (refused := await forbidden_destination(item.url)):
            status, error, latency, outcome = 0, refused, 0.0, "failed"
        else:
            result = await send(self._http, item.url, item.body, secret, item.event_id, int(now.timestamp()),
                                s.timeout_s)
            status, error, latency = result.status_code, result.error, result.latency_ms
            outcome = "delivered" if result.delivered else "failed" if attempt >= s.max_attempts else "retry"
        next_at = now
        if outcome == "retry":
            next_at = now + timedelta(seconds=next_delay(attempt, s.retry_first_s, s.retry_max_s, self._rng))
        row = [item.agent_id, item.rule_id, item.event_id, attempt, now, item.url, status, error, latency, outcome,
               next_at]
        await self._call(store.insert_attempt, self._db(), row)
        if outcome == "failed":
            log.warning("webhook %s of rule %s failed for good after %d attempts: %s", item.event_id, item.rule_id,
                        attempt, error)
        report.attempts.append({"event_id": item.event_id, "attempt": attempt, "status_code": status,
                                "outcome": outcome, "next_attempt_at": next_at})
