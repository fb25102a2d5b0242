"""Usage-limit checks: "may this customer use X more?", asked of the gateway and cached for a few seconds.

Optional and separate from logging and reporting: nothing on those paths calls it, it has its own HTTP client,
and a check costs one ``GET /v1/agents/{agent}/limits/check`` per (meter, unit, model, customer) and
``ttl`` seconds; within the TTL the answer is worked out locally from the cached limits (each limit's
cap and what it had used), for any quantity. A cached answer expires early when its period ends, so a
reset is seen at once. It does not know what was used since it was fetched: the gateway's answer is
itself as fresh as the usage the workers have stored (docs/limits.md).

Failures never raise into the host: the decision is ``fail_open`` (allowed by default) with ``error`` set,
and is not cached. Each SDK package subclasses ``LimitChecker`` with its own error class for bad arguments
(``invalid``); its log lines go to the subclass's module logger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["LimitChecker", "LimitDecision"]

_Key = tuple[str, str, str, str | None]


@dataclass(frozen=True)
class LimitDecision:
    """The answer to one check. ``limit``/``used``/``remaining``/``resets_at`` are those of the limit that
    decides (the first refusing, else the tightest): None when no limit applies."""

    allowed: bool
    limit: Decimal | None = None
    used: int | None = None
    remaining: Decimal | None = None
    resets_at: datetime | None = None
    limit_id: str | None = None
    #: True when worked out from a cached answer (no request was made)
    cached: bool = False
    #: why the gateway could not answer (then ``allowed`` is the checker's ``fail_open``)
    error: str | None = None


@dataclass(frozen=True)
class _Limit:
    limit_id: str
    limit: Decimal
    used: int
    resets_at: datetime


@dataclass(frozen=True)
class _Entry:
    expires: float  # time.monotonic()
    limits: tuple[_Limit, ...]


def _quantity(value: int | str | Decimal, invalid: type[Exception]) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise invalid("quantity must be an int, a Decimal or decimal text (not a float)")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise invalid(f"quantity must be a decimal number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise invalid("quantity must be a finite number >= 0")
    return number


def _decide(limits: tuple[_Limit, ...], quantity: Decimal, *, cached: bool) -> LimitDecision:
    if not limits:
        return LimitDecision(True, cached=cached)
    refusing = [lim for lim in limits if lim.used + quantity > lim.limit]
    decider = refusing[0] if refusing else min(limits, key=lambda lim: (lim.limit - lim.used, lim.resets_at))
    return LimitDecision(not refusing, decider.limit, decider.used, max(decider.limit - decider.used, Decimal(0)),
                         decider.resets_at, decider.limit_id, cached)


def _parse(body: Any) -> tuple[_Limit, ...]:
    return tuple(_Limit(str(s["limit_id"]), Decimal(str(s["limit"])), int(s["used"]),
                        datetime.fromisoformat(str(s["period_end"]).replace("Z", "+00:00")))
                 for s in body["limits"])


class LimitChecker:
    """Checks one agent's usage limits at ``base_url`` (the gateway, e.g. ``http://localhost:9092``)."""

    #: the exception for an invalid argument (each SDK package sets its own)
    invalid: type[Exception] = ValueError

    def __init__(self, base_url: str, agent_id: str, api_key: str, *, ttl: float = 5.0, timeout: float = 2.0,
                 fail_open: bool = True, http_transport: httpx.AsyncBaseTransport | None = None) -> None:
        if ttl < 0 or timeout <= 0:
            raise self.invalid("ttl must be >= 0 and timeout > 0")
        self.base_url = base_url.rstrip("/")
        self.agent_id = agent_id
        self.ttl = ttl
        self.fail_open = fail_open
        self._api_key = api_key
        self._timeout = timeout
        self._transport = http_transport
        self._cache: dict[_Key, _Entry] = {}
        self._inflight: dict[_Key, asyncio.Future[tuple[_Limit, ...]]] = {}
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: requests made, answers served from the cache, failed requests
        self.requests = self.hits = self.errors = 0

    async def check(self, meter: str, quantity: int | str | Decimal = 1, *, customer: str | None = None,
                    model: str = "", unit: str | None = None) -> LimitDecision:
        """May ``customer`` (None: the app itself) use ``quantity`` more of ``meter`` (and ``model``)?"""
        amount = _quantity(quantity, self.invalid)
        key: _Key = (meter, unit or "", model, customer)
        entry = self._cache.get(key)
        if entry is not None and time.monotonic() < entry.expires:
            self.hits += 1
            return _decide(entry.limits, amount, cached=True)
        try:
            limits = await self._fetch(key)
        except Exception as exc:  # noqa: BLE001 - a limit check never breaks the host
            self.errors += 1
            log = logging.getLogger(type(self).__module__)
            log.warning("%s: limit check of %s failed: %s", type(self).__module__.split(".")[0], meter, exc)
            return LimitDecision(self.fail_open, error=str(exc) or type(exc).__name__)
        return _decide(limits, amount, cached=False)

    async def _fetch(self, key: _Key) -> tuple[_Limit, ...]:
        """One request per key at a time: concurrent checks of the same key share it."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a client and futures belong to one loop
            self._loop, self._http, self._inflight = loop, None, {}
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[tuple[_Limit, ...]] = loop.create_future()
        self._inflight[key] = future
        try:
            limits = await self._request(key)
            future.set_result(limits)
            return limits
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._inflight.pop(key, None)

    async def _request(self, key: _Key) -> tuple[_Limit, ...]:
        meter, unit, model, customer = key
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout, transport=self._transport,
                                           headers={"Authorization": f"Bearer {self._api_key}"})
        params = {"meter": meter, "quantity": "0", **({"unit": unit} if unit else {}),
                  **({"model": model} if model else {}), **({"customer": customer} if customer is not None else {})}
        self.requests += 1
        url = f"{self.base_url}/v1/agents/{quote(self.agent_id, safe='')}/limits/check"
        resp = await self._http.get(url, params=params)
        if resp.status_code != 200:
            raise RuntimeError(f"the gateway answered {resp.status_code}: {resp.text[:200]}")
        limits = _parse(resp.json())
        now = datetime.now(UTC)
        until_reset = min(((lim.resets_at - now).total_seconds() for lim in limits), default=self.ttl)
        self._cache[key] = _Entry(time.monotonic() + max(0.0, min(self.ttl, until_reset)), limits)
        return limits

    def clear(self) -> None:
        """Forget every cached answer (the next check of each asks the gateway)."""
        self._cache.clear()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
