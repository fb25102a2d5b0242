"""The transport: one bounded queue, one background worker, batches sent over HTTP.

``submit`` (called by ``GT8004Logger.log`` and the middleware) only appends encoded bytes to a
deque under a lock and, at most once per batch, wakes the worker: it never waits on the network.
The worker (``_worker``: a daemon thread with its own asyncio loop, started lazily and replaced in
a forked child) asks this class for the next batch and hands back each outcome; this module is
the policy: what to send next (the memory queue and the on-disk spool take turns), and what an
outcome means (done, put back with its id, split on 413, spooled, or dropped and reported). It
sends with the lean blocking ``WireClient`` (``_wire``: the worker shares the GIL with the host,
and httpx's per-request Python work showed up in the host's p99), or with an
``httpx.AsyncClient`` when the caller passes ``http_transport`` or a proxy is configured.
Entries live in exactly one place at a time: the memory queue, a put-back batch (kept with its
id), the batch in flight, or the on-disk spool.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import httpx

from ._breaker import CircuitBreaker
from ._config import TransportConfig, TransportStats
from ._queue import EntryQueue
from ._runtime import install_process_hooks
from ._sender import Batch, Outcome, OutcomeKind, Sender, Sleep
from ._spool import Spool
from ._wire import WireClient, proxy_for
from ._worker import Client, Worker

__all__ = ["DropCallback", "Transport"]

log = logging.getLogger(__name__)

DropCallback = Callable[[int, str], None]  # (entries lost, reason)
DROP_LOG_INTERVAL = 10.0  # seconds between two drop warnings of the same reason


class Transport:
    """Batches encoded entries and delivers them; see the module docstring.

    It is the worker's ``BatchSource``: ``next_batch``, ``send`` and ``settle`` run on the
    worker's thread; ``finish`` on whichever side ends closing; the rest on the host's.
    """

    def __init__(self, *, agent_id: str, api_key: str, ingest_url: str, config: TransportConfig,
                 on_drop: DropCallback | None = None, enabled: bool = True,
                 http_transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.enabled = enabled
        self._on_drop = on_drop
        self._http_transport = http_transport
        self._sender = Sender(agent_id=agent_id, api_key=api_key, ingest_url=ingest_url,
                              retry_delays=config.retry_delays, jitter=config.jitter,
                              max_retry_after=config.max_retry_after, use_gzip=config.gzip,
                              timeout=config.timeout)
        self._breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown,
                                       config.breaker_max_cooldown)
        self._spool = (Spool(config.spool_dir, config.max_spool_bytes, config.batch_size)
                       if config.spool_dir is not None else None)
        self._stats = TransportStats()
        self._drop_logged: dict[str, float] = {}
        self._closed = False
        self._auto_flush = True
        self._reset_runtime()
        install_process_hooks(self)

    def _reset_runtime(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()  # closed/finished flags, flush waiters and statistics
        self._queue = EntryQueue(self.config)
        self._inflight: Batch | None = None
        self._finished = False
        self._prefer_spool = False
        self._flush_requested = False
        self._waiters: list[cf.Future[bool]] = []
        self._auth_failed = False
        self._done: cf.Future[None] = cf.Future()
        self._worker = Worker(self)  # threads do not survive fork: the child gets a new one

    def after_fork(self) -> None:
        """In a forked child: the parent still owns (and sends) what it queued; start afresh."""
        self._reset_runtime()
        if self._spool is not None:
            self._spool.after_fork()

    # -- host side ----------------------------------------------------------------------------
    def start_auto_flush(self) -> None:
        """Send queued entries every ``flush_interval`` seconds (also fine before a loop runs)."""
        self._auto_flush = True
        if self.enabled:
            self._worker.ensure_started()

    def submit(self, data: bytes) -> bool:
        """Queue one encoded entry; never blocks on I/O. Returns whether it was kept."""
        if not self.enabled:
            return False
        if os.getpid() != self._pid:
            self.after_fork()
        if self._closed:
            self._drop(1, "closed")
            return False
        kept, signal = self._queue.offer(data)
        if kept:
            if signal:
                self._worker.wake()
            elif self._worker.thread is None:
                self._worker.ensure_started()  # started lazily; from then on it keeps its own time
            return True
        reason = "queue_full"
        if self._spool is not None:
            if self._spool.append(data):
                with self._lock:
                    self._stats.spooled += 1
                return True
            reason = "spool_full"
        self._drop(1, reason)
        return False

    def request_flush(self) -> cf.Future[bool]:
        """Ask the worker to send everything queued now (and the spool); resolves to success."""
        future: cf.Future[bool] = cf.Future()
        if not self.enabled or self._closed:
            future.set_result(not self.enabled)
            return future
        with self._lock:
            self._flush_requested = True
            self._waiters.append(future)
        self._worker.wake()
        return future

    def begin_close(self, timeout: float) -> cf.Future[None]:
        """Stop accepting entries; flush within ``timeout``; spill or report the rest."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._flush_requested = True
        if not self._worker.close(timeout):  # no worker will run: spill or report here
            self.finish()
        return self._done

    def ping(self, data: bytes) -> cf.Future[Outcome]:
        """Send one entry right away in its own batch, one attempt (``verify_connection``)."""
        sender = self._sender

        async def no_retry(_delay: float) -> bool:
            return False

        async def once(client: Client) -> Outcome:
            return await sender.send(client, Batch([data]), no_retry)

        return self._worker.call(once)

    def close_at_exit(self) -> None:
        """The at-exit flush: send what is queued within ``exit_timeout``, spool or report the rest."""
        if self._closed or os.getpid() != self._pid:
            return
        timeout = self.config.exit_timeout
        try:
            self.begin_close(timeout).result(timeout + 0.5)
        except Exception:  # noqa: BLE001 - nothing may escape at exit
            log.debug("gt8004: at-exit flush did not finish in time", exc_info=True)
            self.abandon()

    def stats(self) -> TransportStats:
        with self._lock:
            snapshot = replace(self._stats, dropped=dict(self._stats.dropped))
        snapshot.queued, snapshot.queued_bytes = self._queue.size()
        snapshot.spool_bytes = self._spool.size_bytes if self._spool is not None else 0
        snapshot.breaker_state = self._breaker.state
        snapshot.auth_failed = self._auth_failed
        return snapshot

    def _drop(self, count: int, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            total = self._stats.dropped[reason] = self._stats.dropped.get(reason, 0) + count
            loud = now - self._drop_logged.get(reason, -DROP_LOG_INTERVAL) >= DROP_LOG_INTERVAL
            if loud:
                self._drop_logged[reason] = now
        if loud:  # at most one line per reason every DROP_LOG_INTERVAL: overload must not flood logs
            log.warning("gt8004: dropped %d entr%s (%s); %d so far for this reason",
                        count, "y" if count == 1 else "ies", reason, total)
        if self._on_drop is not None:
            try:
                self._on_drop(count, reason)
            except Exception:  # noqa: BLE001 - a user callback must not break the SDK
                log.exception("gt8004: on_drop callback raised")

    # -- the worker's source: choosing and settling batches -----------------------------------
    @property
    def finished(self) -> bool:
        return self._finished

    def idle(self) -> bool:
        return self._queue.idle()

    def new_client(self) -> Client:
        """The lean blocking client (see ``_wire``), unless the caller supplied an httpx transport
        or the environment routes the ingest URL through a proxy."""
        url = self._sender.ingest_url
        if self._http_transport is None and proxy_for(url) is None:
            try:
                return WireClient(url, self.config.timeout)
            except ValueError:
                log.warning("gt8004: ingest URL %r is not plain http(s); using httpx", url)
        return httpx.AsyncClient(transport=self._http_transport, timeout=self.config.timeout)

    def recover(self) -> None:
        if self._spool is not None:
            self._spool.recover()

    def next_batch(self, now: float) -> tuple[Batch | None, float | None]:
        """The next batch, or (None, seconds the worker may sleep; None: until woken). Waiting
        flushes are answered here: False while sending is blocked, True once all is sent."""
        self._queue.clear_wake()
        if self._auth_failed or not self._breaker.allow():
            self._resolve_waiters(False)
            return None, None if self._auth_failed else self._breaker.seconds_until_probe()
        batch, timeout = self._take(now)
        if batch is None and self._queue.idle():
            self._resolve_waiters(True)
        return batch, timeout

    async def send(self, client: Client, batch: Batch, sleep: Sleep) -> Outcome:
        self._inflight = batch
        return await self._sender.send(client, batch, sleep)

    def _take(self, now: float) -> tuple[Batch | None, float | None]:
        """The next batch to send, or (None, seconds until the oldest entry is due)."""
        queue, spool, closing = self._queue, self._spool, self._worker.closing
        batch = queue.take_pending()
        if batch is not None:
            return batch, None
        due = queue.is_due(now, self._flush_requested or closing, self._auto_flush)
        if due and not (self._prefer_spool and spool is not None):
            batch = queue.cut()
            if batch is not None:
                self._prefer_spool = spool is not None  # alternate with the spool: both drain
                return batch, None
        if spool is not None and not closing:
            batch = spool.claim()
            if batch is not None:
                self._prefer_spool = False
                return batch, None
        if due:
            batch = queue.cut()
            if batch is not None:
                return batch, None
        return None, queue.due_in(now, self._auto_flush)

    def _release_memory(self, batch: Batch) -> None:
        if batch.spool_path is None:
            self._queue.release(batch)

    def _put_back(self, batch: Batch) -> None:
        if batch.spool_path is not None and self._spool is not None:
            self._spool.release(batch, done=False)
        else:
            self._queue.put_back(batch)

    def settle(self, batch: Batch, outcome: Outcome) -> None:
        self._inflight = None
        kind, n = outcome.kind, len(batch.entries)
        self._stats.batches_sent += 1
        if kind is OutcomeKind.DELIVERED:
            self._breaker.record_success()
            self._release_memory(batch)
            if self._spool is not None:
                self._spool.release(batch, done=True)
            rejected = min(len(outcome.rejected), n)
            self._queue.grow_limits()
            with self._lock:
                self._stats.delivered += n - rejected
                self._stats.rejected += rejected
            if rejected:
                log.warning("gt8004: the server rejected %d entr%s of batch %s: %s", rejected,
                            "y" if rejected == 1 else "ies", batch.batch_id, outcome.rejected[:3])
                self._drop(rejected, "rejected")
        elif kind is OutcomeKind.SPLIT:
            self._split(batch)
        elif kind is OutcomeKind.DROPPED:
            self._breaker.record_success()
            self._release_memory(batch)
            if self._spool is not None:
                self._spool.release(batch, done=True)
            log.error("gt8004: the server refused batch %s (%s); not retrying", batch.batch_id,
                      outcome.error)
            self._stats.last_error = outcome.error
            self._drop(n, "bad_request")
        else:
            self._stats.last_error = outcome.error
            self._put_back(batch)
            if kind is OutcomeKind.AUTH:
                self._auth_failed = True
                log.error("gt8004: the ingest API refused the API key or agent id (%s); sending stopped, "
                          "entries are kept up to the memory bound", outcome.error)
            elif kind is OutcomeKind.FAILED:
                self._breaker.record_failure()
                self._stats.failed_flushes += 1
                log.warning("gt8004: flush of %d entries failed (%s); kept for retry, breaker %s",
                            n, outcome.error, self._breaker.state)
            self._resolve_waiters(False)

    def _split(self, batch: Batch) -> None:
        n = len(batch.entries)
        if n == 1:
            self._release_memory(batch)
            if self._spool is not None:
                self._spool.release(batch, done=True)
            log.error("gt8004: an entry of %d bytes is too large for the server (413)", batch.nbytes)
            self._drop(1, "too_large")
            return
        half = n // 2
        first, second = Batch(batch.entries[:half]), Batch(batch.entries[half:])
        self._queue.shrink_limits(batch)
        if batch.spool_path is not None and self._spool is not None:
            for part in (first, second):
                if not self._spool.write_batch(part):
                    self._drop(len(part.entries), "spool_full")
            self._spool.release(batch, done=True)
            return
        self._queue.put_back(first, second)

    def _resolve_waiters(self, ok: bool) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
            self._flush_requested = self._worker.closing
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(ok)

    def abandon(self) -> None:
        """Closing ran out of time: spill or report everything held now, the batch in flight too."""
        self.finish(include_inflight=True)

    def finish(self, include_inflight: bool = False) -> None:
        """Worker gone (closing): spill what is left to the spool or report it as dropped."""
        with self._lock:
            if self._finished:
                return
            self._finished = self._closed = True
        leftovers = self._queue.drain()
        inflight = self._inflight
        if include_inflight and inflight is not None and inflight.spool_path is None:
            leftovers.insert(0, inflight)  # a spooled batch in flight stays on disk (recovered later)
        lost = 0
        for batch in leftovers:
            if self._spool is not None and self._spool.write_batch(batch):
                self._stats.spooled += len(batch.entries)
            else:
                lost += len(batch.entries)
        if lost:
            self._drop(lost, "shutdown")
        if self._spool is not None:
            self._spool.seal()
        self._resolve_waiters(not leftovers)
        if not self._done.done():
            self._done.set_result(None)
