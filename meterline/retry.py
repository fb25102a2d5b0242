"""The one retry loop: call again after a failure, waiting twice as long each time, up to a ceiling.

Kafka and ClickHouse go away and come back; the code that talks to them does not give up, it waits
and tries again (a sink that dropped a batch instead would lose it, see ``docs/architecture.md``).
Each caller used to carry its own copy of the loop; they differed only in what they caught, how long
they waited, what they logged and when they stopped trying. Those are the parameters here:

* ``retry_on`` — the exceptions that mean "try again" (anything else propagates at once);
* ``first`` / ``ceiling`` — the first wait, doubled after every failure up to ``ceiling``;
* ``on_error(exc, delay)`` — called after each failure before the wait: log it, count it, or raise
  to stop retrying with that exception;
* ``abort()`` — asked after each failure, before and after the wait: once true, the caller no longer
  wants the result (a rebalance took the partition, the process is stopping) and ``Aborted`` is raised.
  ``retry_or_abort`` turns that into ``False`` for callers that only need to know whether it was done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from meterline.errors import MeterlineError

__all__ = ["Aborted", "retry", "retry_or_abort"]

T = TypeVar("T")
Errors = type[BaseException] | tuple[type[BaseException], ...]


class Aborted(MeterlineError):
    """``abort()`` turned true between two attempts: nobody wants the result any more."""


async def retry(attempt: Callable[[], Awaitable[T]], *, retry_on: Errors = Exception, first: float = 0.1,
                ceiling: float = 5.0, abort: Callable[[], bool] | None = None,
                on_error: Callable[[BaseException, float], object] | None = None) -> T:
    """``await attempt()`` until it returns, with exponential backoff; raise ``Aborted`` once ``abort()``."""
    delay = first
    while True:
        try:
            return await attempt()
        except retry_on as exc:
            if on_error is not None:
                on_error(exc, delay)
            if abort is not None and abort():
                raise Aborted(f"gave up after {exc!r}") from exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, ceiling)
        if abort is not None and abort():
            raise Aborted("gave up while waiting to try again")


async def retry_or_abort(attempt: Callable[[], Awaitable[object]], *, abort: Callable[[], bool],
                         retry_on: Errors = Exception, first: float = 0.1, ceiling: float = 5.0,
                         on_error: Callable[[BaseException, float], object] | None = None) -> bool:
    """``retry``: True once ``attempt()`` succeeded, False if ``abort()`` turned true first."""
    try:
        await retry(attempt, retry_on=retry_on, first=first, ceiling=ceiling, abort=abort, on_error=on_error)
    except Aborted:
        return False
    return True
