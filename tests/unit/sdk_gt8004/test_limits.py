"""The SDKs' usage-limit checker (gt8004 and its copy in billing_sdk) against a scripted gateway
(httpx.MockTransport): what it decides from an answer, how long it reuses one, and that it never raises."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import billing_sdk
import gt8004
import httpx
import pytest

CHECKERS = [pytest.param(gt8004.LimitChecker, gt8004.ConfigError, id="gt8004"),
            pytest.param(billing_sdk.LimitChecker, billing_sdk.InvalidUsageError, id="billing_sdk")]


def _state(limit_id: str, limit: str, used: int, resets: datetime) -> dict[str, Any]:
    return {"limit_id": limit_id, "limit": limit, "used": used, "period_end": resets.isoformat()}


class Gateway:
    """Answers every check with ``limits``; counts the requests and keeps their query strings."""

    def __init__(self, limits: list[dict[str, Any]], status: int = 200) -> None:
        self.limits, self.status = limits, status
        self.queries: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.queries.append(dict(request.url.params))
        assert request.headers["Authorization"] == "Bearer key-1"
        assert request.url.raw_path.split(b"?")[0] == b"/v1/agents/agent%201/limits/check"  # the agent quoted
        if self.status != 200:
            return httpx.Response(self.status, json={"detail": "refused"})
        return httpx.Response(200, json={"allowed": True, "limits": self.limits})


def _checker(cls: Callable[..., Any], gateway: Gateway, **kwargs: Any) -> Any:
    return cls("http://gw/", "agent 1", "key-1", http_transport=httpx.MockTransport(gateway), **kwargs)


@pytest.mark.parametrize(("cls", "error"), CHECKERS)
async def test_the_deciding_limit_and_the_cache(cls: Callable[..., Any], error: type[Exception]) -> None:
    month_end = datetime.now(UTC) + timedelta(days=3)
    gateway = Gateway([_state("lim_day", "100", 90, month_end - timedelta(days=1)),
                       _state("lim_month", "1000", 500, month_end)])
    checker = _checker(cls, gateway, ttl=60)
    try:
        fits = await checker.check("llm", 10, customer="acme")  # both have room: the tightest decides
        assert (fits.allowed, fits.limit_id, fits.remaining, fits.cached) == (True, "lim_day", Decimal(10), False)
        refused = await checker.check("llm", "10.5", customer="acme")  # from the cache: the first refusing
        assert (refused.allowed, refused.limit_id, refused.used, refused.cached) == (False, "lim_day", 90, True)
        assert gateway.queries == [{"meter": "llm", "quantity": "0", "customer": "acme"}]
        await checker.check("llm", 1, customer="other", model="gpt-4", unit="tokens")  # another key: asked
        assert gateway.queries[1] == {"meter": "llm", "quantity": "0", "customer": "other", "model": "gpt-4",
                                      "unit": "tokens"}
        checker.clear()
        await checker.check("llm", 1, customer="acme")
        assert (len(gateway.queries), checker.requests, checker.hits) == (3, 3, 1)
        for bad in (1.5, -1, "ten", True):
            with pytest.raises(error):
                await checker.check("llm", bad)
    finally:
        await checker.aclose()


@pytest.mark.parametrize(("cls", "error"), CHECKERS)
async def test_an_answer_is_not_reused_past_its_period(cls: Callable[..., Any], error: type[Exception]) -> None:
    """A limit whose period has ended (the gateway's clock ahead of ours) is asked again at once; ttl=0 never
    reuses; with no limit, the TTL alone applies (negative control: reused)."""
    ended = Gateway([_state("lim", "10", 10, datetime.now(UTC) - timedelta(seconds=1))])
    never = Gateway([_state("lim", "10", 1, datetime.now(UTC) + timedelta(days=1))])
    free = Gateway([])
    checkers = [_checker(cls, ended, ttl=60), _checker(cls, never, ttl=0), _checker(cls, free, ttl=60)]
    try:
        for checker in checkers:
            await checker.check("llm", 1)
            await checker.check("llm", 1)
        assert [len(g.queries) for g in (ended, never, free)] == [2, 2, 1]
    finally:
        for checker in checkers:
            await checker.aclose()


@pytest.mark.parametrize(("cls", "error"), CHECKERS)
async def test_concurrent_checks_share_one_request(cls: Callable[..., Any], error: type[Exception]) -> None:
    release = asyncio.Event()
    gateway = Gateway([_state("lim", "10", 3, datetime.now(UTC) + timedelta(days=1))])

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return gateway(request)

    checker = cls("http://gw", "agent 1", "key-1", http_transport=httpx.MockTransport(slow), ttl=60)
    try:
        pending = [asyncio.ensure_future(checker.check("llm", q)) for q in (1, 7, 8)]
        await asyncio.sleep(0)  # let them all start and find the one request in flight
        release.set()
        assert [d.allowed for d in await asyncio.gather(*pending)] == [True, True, False]
        assert len(gateway.queries) == 1
    finally:
        await checker.aclose()


@pytest.mark.parametrize(("cls", "error"), CHECKERS)
async def test_failures_decide_by_fail_open_and_are_not_cached(cls: Callable[..., Any], error: type[Exception]) -> None:
    refused = Gateway([], status=403)
    opened, closed = _checker(cls, refused), _checker(cls, refused, fail_open=False)
    try:
        first = await opened.check("llm", 1)
        assert (first.allowed, first.limit, first.cached) == (True, None, False)
        assert first.error is not None and "403" in first.error
        assert (await closed.check("llm", 1)).allowed is False
        await opened.check("llm", 1)
        assert len(refused.queries) == 3 and opened.errors == 2
    finally:
        await opened.aclose()
        await closed.aclose()
