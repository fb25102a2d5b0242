"""Waiting in tests for a condition itself, never for a fixed time that is usually enough.

A test that sleeps "long enough" for something to happen fails on a slow or busy machine and wastes
time on a fast one; it also passes for the wrong reason when the thing never happened but was not
needed after all. Here is the one way the suite waits instead:

- ``wait_until(predicate, timeout, what)``: poll ``predicate`` until it returns something true (and
  return it), or fail naming ``what`` and the last value seen;
- ``eventually(...)``: the same inside an event loop (``predicate`` may also be a coroutine function);
- ``subscribed(client, *topics)``: subscribe a gmqtt client and return on the broker's SUBACK.

A sleep that is left in a test paces load, or stands for a duration on purpose (an outage while
logging goes on, a client's retry delay, a process that waits to be killed); it says so next to it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from gmqtt import Client

__all__ = ["eventually", "subscribed", "wait_until"]

T = TypeVar("T")

INTERVAL = 0.05  # between two looks; callers whose predicate is costly (a Kafka admin call) pass more


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "the condition", *,
               interval: float = INTERVAL) -> T:
    """Poll ``predicate`` until its result is true and return that result; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


async def eventually(predicate: Callable[[], T | Awaitable[T]], timeout: float = 10.0,
                     what: str = "the condition", *, interval: float = INTERVAL) -> T:
    """``wait_until`` without blocking the event loop; an awaitable result is awaited first."""
    deadline = time.monotonic() + timeout
    while True:
        value: Any = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        await asyncio.sleep(interval)


async def subscribed(client: Client, *topics: str, qos: int = 1, timeout: float = 10.0) -> None:
    """Subscribe ``client`` to ``topics`` in one SUBSCRIBE and return once the broker granted them all.

    Until the SUBACK a publish on those topics may reach the broker before the subscription does and
    is then not delivered. Sets ``client.on_subscribe`` (the tests use it for nothing else).
    """
    from gmqtt import Subscription

    granted: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
    mids: list[int] = []

    def on_subscribe(_client: Any, mid: int, qoses: tuple[int, ...], _properties: Any) -> None:
        if mid in mids and not granted.done():
            granted.set_result(tuple(qoses))

    client.on_subscribe = on_subscribe
    # gmqtt only writes the packet here: its SUBACK is read by the loop after this line, never during it
    mids.append(client.subscribe([Subscription(topic, qos=qos) for topic in topics]))
    codes = await asyncio.wait_for(granted, timeout)
    assert len(codes) == len(topics) and all(code < 0x80 for code in codes), \
        f"the broker refused a subscription to {topics}: SUBACK codes {codes}"
