"""One webhook attempt, signed, and when the next one is due after a failure.

An attempt POSTs the event's stored JSON body with ``Meterline-Signature`` (``t=<unix seconds>,v1=<hex
HMAC-SHA256 over "<t>.<body>">``, made by ``schemas.alerts``) and ``Meterline-Event-Id``, and reports what
happened: the HTTP status (0 when there was no answer), the error, the latency. It never raises for the
receiver's sake. A 2xx delivers the event; anything else is retried.

Why not ``meterline.retry``: that loop waits in memory inside one call, which suits a sink that must not
move on. A webhook's schedule has to outlive the process (a receiver may be down for hours), so each attempt
is logged with the time the next one is due and the evaluator's next tick picks it up (``evaluator.py``);
here is only the delay, with the same doubling up to a ceiling, plus jitter so that receivers coming back
are not hit by every retry at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from schemas.alerts import EVENT_ID_HEADER, SIGNATURE_HEADER, signature_header

__all__ = ["USER_AGENT", "AttemptResult", "forbidden_destination", "next_delay", "send"]

log = logging.getLogger(__name__)

USER_AGENT = "Meterline-Webhooks/1"
_ERROR_CHARS = 500


@dataclass(frozen=True)
class AttemptResult:
    status_code: int
    error: str
    latency_ms: float

    @property
    def delivered(self) -> bool:
        return 200 <= self.status_code < 300


def next_delay(attempt: int, first_s: float, ceiling_s: float, rng: random.Random) -> float:
    """Seconds from failed attempt ``attempt`` (1-based) to the next: ``d/2 + uniform(0, d/2)`` with
    ``d = first_s · 2^(attempt-1)`` capped at ``ceiling_s`` ("equal jitter": never less than half of d)."""
    delay = min(first_s * 2.0 ** min(attempt - 1, 62), ceiling_s)
    return delay / 2 + rng.uniform(0, delay / 2)


async def forbidden_destination(url: str) -> str | None:
    """Why ``url``'s host may not receive webhooks (it resolves to a loopback, private, link-local, reserved or
    multicast address), or None. Checked before each attempt unless METERLINE_ALERTS_ALLOW_PRIVATE_URLS."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host!r}: {exc}"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if (address.is_private or address.is_loopback or address.is_link_local or address.is_reserved
                or address.is_multicast or address.is_unspecified):
            return (f"{host!r} resolves to {address}, a non-public address (METERLINE_ALERTS_ALLOW_PRIVATE_URLS "
                    "allows it)")
    return None


async def send(http: httpx.AsyncClient, url: str, body: str, secret: str, event_id: str, timestamp: int,
               timeout_s: float) -> AttemptResult:
    """POST ``body`` to ``url`` signed with ``secret`` at ``timestamp``; what happened, never an exception."""
    raw = body.encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, EVENT_ID_HEADER: event_id,
               SIGNATURE_HEADER: signature_header(secret, timestamp, raw)}
    started = time.perf_counter()
    try:
        resp = await http.post(url, content=raw, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        latency = (time.perf_counter() - started) * 1000
        error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
        log.info("webhook %s to %s failed: %s", event_id, url, error)
        return AttemptResult(0, error, latency)
    latency = (time.perf_counter() - started) * 1000
    if 200 <= resp.status_code < 300:
        return AttemptResult(resp.status_code, "", latency)
    error = f"HTTP {resp.status_code}: {resp.text[:200]}"[:_ERROR_CHARS]
    log.info("webhook %s to %s answered %s", event_id, url, resp.status_code)
    return AttemptResult(resp.status_code, error, latency)
