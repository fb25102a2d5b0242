"""The transport's background worker: one daemon thread running its own asyncio loop.

The host's event loop (or a host without one, at import time) is never involved: the worker has
a private loop on a private thread, started lazily (first entry, flush, ping or close), one at a
time. Threads do not survive ``fork``: a forked child gets a new ``Worker`` from the transport,
started lazily like the first. Between batches the worker sleeps until woken (a full batch, a
flush, close) or until the next thing is due (the oldest entry's age, a breaker probe); it
never polls.

What to send and what to do with each outcome is not decided here: the worker asks a
``BatchSource`` (the transport) for the next batch, has it sent and hands the outcome back. The
worker owns time: waking and waiting, retry sleeps that shutdown cuts short, and the close
deadline after which it stops; what is still held then is the source's to spool or report.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import httpx

from ._runtime import InlineExecutor
from ._sender import Batch, Outcome, OutcomeKind, Sleep
from ._wire import WireClient

__all__ = ["BatchSource", "Client", "Worker"]

log = logging.getLogger(__name__)

Client = httpx.AsyncClient | WireClient
T = TypeVar("T")


class BatchSource(Protocol):
    """What the worker needs from the transport: batches to send and somewhere to settle them."""

    @property
    def finished(self) -> bool:
        """The source gave up (closed, its leftovers spilled or reported): send nothing more."""
        ...

    def idle(self) -> bool:
        """Nothing held in memory waiting to be sent."""
        ...

    def new_client(self) -> Client:
        """The HTTP client the worker sends with (made and closed on the worker's thread)."""
        ...

    def recover(self) -> None:
        """On the worker's thread, before the first batch: take up what earlier runs left behind."""
        ...

    def next_batch(self, now: float) -> tuple[Batch | None, float | None]:
        """The batch to send now, or (None, seconds to sleep until one is due; None: until woken)."""
        ...

    async def send(self, client: Client, batch: Batch, sleep: Sleep) -> Outcome:
        """Deliver ``batch`` with retries, waiting between them with ``sleep``."""
        ...

    def settle(self, batch: Batch, outcome: Outcome) -> None:
        """What happens to a batch after its send: done, put back, split, spooled or dropped."""
        ...

    def finish(self) -> None:
        """The worker has stopped: spool or report whatever is still held."""
        ...


class Worker:
    """Runs a ``BatchSource``'s sends on a background thread; see the module docstring."""

    def __init__(self, source: BatchSource) -> None:
        self._source = source
        self._lock = threading.Lock()  # starting the thread, and the close request
        self.thread: threading.Thread | None = None  # None until started (read on the hot path)
        self.closing = False  # close requested: send what is due, then stop
        self._close_deadline = float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._close_event: asyncio.Event | None = None
        self._client_ready: asyncio.Event | None = None
        self._client: Client | None = None

    # -- host side ----------------------------------------------------------------------------
    def ensure_started(self) -> None:
        """Start the thread unless it was started already or closing began."""
        if self.thread is not None:
            return
        with self._lock:
            if self.thread is not None or self.closing or self._source.finished:
                return
            self._start_locked()

    def wake(self) -> None:
        """Have the worker look at its source again now (a full batch, a flush request)."""
        self.ensure_started()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # loop closed: the worker has finished
                pass

    def close(self, timeout: float) -> bool:
        """Send what is held within ``timeout`` (from the first call), then stop.

        Returns False when no worker will run to do it (nothing to send, or no thread can be
        started now): the caller settles what is left itself.
        """
        with self._lock:
            if not self.closing:
                self.closing = True
                self._close_deadline = time.monotonic() + max(0.0, timeout)
            running = self.thread is not None and self.thread.is_alive()
        if not running and (self._source.idle() or not self._start_safely()):
            return False
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._on_close_requested)
            except RuntimeError:
                return False
        return True

    def call(self, fn: Callable[[Client], Awaitable[T]]) -> cf.Future[T]:
        """Run ``fn(client)`` on the worker's loop, with its client, beside the batches."""
        self.ensure_started()
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._with_client(fn), self._loop)

    def _start_safely(self) -> bool:
        with self._lock:
            if self.thread is not None and self.thread.is_alive():
                return True
            try:
                self._start_locked()
            except RuntimeError:  # e.g. no new threads during interpreter shutdown
                return False
        return True

    def _start_locked(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_default_executor(InlineExecutor())
        self._loop = loop
        self._wake = asyncio.Event()
        self._close_event = asyncio.Event()
        self._client_ready = asyncio.Event()
        thread = threading.Thread(target=self._run, args=(loop,), name="gt8004-transport", daemon=True)
        self.thread = thread
        thread.start()

    # -- worker thread ------------------------------------------------------------------------
    def _on_close_requested(self) -> None:
        if self._close_event is not None:
            self._close_event.set()
        if self._wake is not None:
            self._wake.set()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException:  # noqa: BLE001 - never let the worker die loudly in the host
            log.exception("gt8004: transport worker failed")
        finally:
            self._source.finish()
            try:
                loop.close()
            except Exception:  # noqa: BLE001
                log.debug("gt8004: closing the worker loop failed", exc_info=True)

    async def _main(self) -> None:
        assert self._client_ready is not None
        source = self._source
        client = source.new_client()
        self._client = client
        self._client_ready.set()
        try:
            source.recover()
            while True:
                batch = await self._next_batch()
                if batch is None:
                    break
                outcome = await source.send(client, batch, self._sleep)
                if source.finished:  # abandoned meanwhile: the batch was already spilled or reported
                    break
                source.settle(batch, outcome)
                if outcome.kind is OutcomeKind.ABORTED:  # shutdown left no time to retry: stop here
                    break
        finally:
            if isinstance(client, WireClient):
                client.close()
            else:
                await client.aclose()

    async def _next_batch(self) -> Batch | None:
        """The next batch from the source, sleeping while there is none; None: stop."""
        assert self._wake is not None
        while True:
            self._wake.clear()
            now = time.monotonic()
            if self._source.finished or (self.closing and now >= self._close_deadline):
                return None
            batch, timeout = self._source.next_batch(now)
            if batch is not None:
                return batch
            if self.closing:
                return None
            await self._wait(timeout)

    async def _with_client(self, fn: Callable[[Client], Awaitable[T]]) -> T:
        assert self._client_ready is not None
        await self._client_ready.wait()
        assert self._client is not None
        return await fn(self._client)

    async def _sleep(self, delay: float) -> bool:
        """Wait between retries; False (give up for now) when shutdown leaves no time for it."""
        assert self._close_event is not None
        end = time.monotonic() + delay
        if not self.closing:
            try:
                await asyncio.wait_for(self._close_event.wait(), delay)
            except TimeoutError:
                return True
        if end > self._close_deadline:
            return False
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        return True

    async def _wait(self, timeout: float | None) -> None:
        """Until woken or ``timeout``; a timer that sets the event is cheaper than ``wait_for``
        (no task per wait), and the caller re-checks everything either way."""
        wake = self._wake
        assert wake is not None
        if timeout is None:
            await wake.wait()
            return
        timer = asyncio.get_running_loop().call_later(timeout, wake.set)
        try:
            await wake.wait()
        finally:
            timer.cancel()
