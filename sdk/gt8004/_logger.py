"""``GT8004Logger``: the public entry point, a thin shell around the transport."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx

from ._config import TransportConfig, TransportStats
from ._entry import RequestLogEntry, encode_clamped, encode_entry, encode_fields
from ._limits import LimitChecker, LimitDecision
from ._sender import OutcomeKind
from ._transport import DropCallback, Transport

__all__ = ["DEFAULT_INGEST_URL", "GT8004Logger"]

log = logging.getLogger(__name__)

DEFAULT_INGEST_URL = "http://localhost:9092/v1/ingest"
# Environment variables read here, and only here (documented in sdk/README.md):
ENV_AGENT_ID = "GT8004_AGENT_ID"      # agent id when the agent_id argument is not given
ENV_API_KEY = "GT8004_API_KEY"        # API key when the api_key argument is not given
ENV_INGEST_URL = "GT8004_INGEST_URL"  # ingest URL when the ingest_url argument is not given


class GT8004Logger:
    """Queues request log entries and ships them in batches to ``POST /v1/ingest``.

    ``log`` never waits on the network and never raises; without an agent id or API key the
    logger is disabled (a warning, then every call is a no-op) instead of breaking the host.
    Entries beyond the memory bound go to ``spool_dir`` when set, else they are counted as
    dropped and ``on_drop(count, reason)`` is called.
    """

    def __init__(self, agent_id: str | None = None, api_key: str | None = None,
                 ingest_url: str | None = None, batch_size: int = 50, flush_interval: float = 5.0,
                 *, max_batch_bytes: int = 512 * 1024, max_queue_entries: int = 10_000,
                 max_queue_bytes: int = 32 * 1024 * 1024,
                 spool_dir: str | os.PathLike[str] | None = None,
                 max_spool_bytes: int = 256 * 1024 * 1024, on_drop: DropCallback | None = None,
                 retry_delays: Sequence[float] = (1.0, 2.0, 4.0), timeout: float = 10.0,
                 gzip: bool = True, breaker_threshold: int = 3, breaker_cooldown: float = 10.0,
                 exit_timeout: float = 2.0,
                 http_transport: httpx.AsyncBaseTransport | None = None, limits_url: str | None = None,
                 limit_cache_ttl: float = 5.0, limit_fail_open: bool = True) -> None:
        self.agent_id = agent_id or os.environ.get(ENV_AGENT_ID) or ""
        api_key = api_key or os.environ.get(ENV_API_KEY) or ""
        self.ingest_url = ingest_url or os.environ.get(ENV_INGEST_URL) or DEFAULT_INGEST_URL
        self.config = TransportConfig(
            batch_size=batch_size, flush_interval=flush_interval, max_batch_bytes=max_batch_bytes,
            max_queue_entries=max_queue_entries, max_queue_bytes=max_queue_bytes, spool_dir=spool_dir,
            max_spool_bytes=max_spool_bytes, retry_delays=tuple(retry_delays), timeout=timeout,
            gzip=gzip, breaker_threshold=breaker_threshold, breaker_cooldown=breaker_cooldown,
            exit_timeout=exit_timeout)
        self.enabled = bool(self.agent_id and api_key)
        if not self.enabled:
            log.warning("gt8004: no agent id or API key (arguments or %s/%s); logging is disabled",
                        ENV_AGENT_ID, ENV_API_KEY)
        self.transport = Transport(agent_id=self.agent_id, api_key=api_key, ingest_url=self.ingest_url,
                                   config=self.config, on_drop=on_drop, enabled=self.enabled,
                                   http_transport=http_transport)
        # usage-limit checks (check_limit): their own client, never on the logging path
        base = limits_url or self.ingest_url.removesuffix("/").removesuffix("/v1/ingest")
        self.limits = LimitChecker(base, self.agent_id, api_key, ttl=limit_cache_ttl, fail_open=limit_fail_open,
                                   http_transport=http_transport)

    def log_nowait(self, entry: RequestLogEntry | Mapping[str, Any]) -> bool:
        """Queue ``entry`` without awaiting; True when it was kept (queued or spooled)."""
        if not self.enabled:
            return False
        try:
            return self.transport.submit(encode_entry(entry))
        except Exception:  # noqa: BLE001 - the SDK never raises into the host
            log.exception("gt8004: could not queue an entry")
            return False

    def log_fields(self, fields: dict[str, Any], *, clamped: bool = False) -> bool:
        """Queue an entry given as a dict of the ingest API's entry fields without None values (the middleware's
        fast path: no ``RequestLogEntry`` round trip). The dict is adjusted in place.
        ``clamped``: the caller already kept every field within the limits (``encode_clamped``)."""
        if not self.enabled:
            return False
        try:
            return self.transport.submit(encode_clamped(fields) if clamped else encode_fields(fields))
        except Exception:  # noqa: BLE001 - the SDK never raises into the host
            log.exception("gt8004: could not queue an entry")
            return False

    async def log(self, entry: RequestLogEntry | Mapping[str, Any]) -> bool:
        """Queue ``entry`` (non-blocking); True when it was kept."""
        return self.log_nowait(entry)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Send everything queued now; True when all of it was delivered within ``timeout``."""
        try:
            future = self.transport.request_flush()
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            return False
        except Exception:  # noqa: BLE001
            log.exception("gt8004: flush failed")
            return False

    async def close(self, timeout: float = 5.0) -> None:
        """Flush within ``timeout`` and stop; the rest goes to the spool or is reported dropped."""
        try:
            await self.limits.aclose()
        except Exception:  # noqa: BLE001
            log.debug("gt8004: closing the limit checker failed", exc_info=True)
        try:
            future = self.transport.begin_close(timeout)
            await asyncio.wait_for(asyncio.wrap_future(future), timeout + 0.5)
        except TimeoutError:
            log.warning("gt8004: close did not finish within %.1fs; spilling what is left", timeout)
            self.transport.abandon()
        except Exception:  # noqa: BLE001
            log.exception("gt8004: close did not finish cleanly")
            self.transport.abandon()

    async def verify_connection(self, timeout: float = 10.0) -> bool:
        """Send one ``sdk_ping`` entry now; True when the ingest API accepted it."""
        if not self.enabled:
            return False
        entry = RequestLogEntry(request_id=str(uuid.uuid4()), method="GET", path="/__gt8004/ping",
                                status_code=200, response_ms=0.0, source="sdk_ping")
        try:
            future = self.transport.ping(encode_entry(entry))
            outcome = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except Exception as exc:  # noqa: BLE001
            log.warning("gt8004: verify_connection failed: %s", exc)
            return False
        if outcome.kind is OutcomeKind.DELIVERED:
            return True
        log.warning("gt8004: verify_connection to %s failed: %s", self.ingest_url, outcome.error)
        return False

    async def check_limit(self, meter: str, quantity: int | str | Decimal = 1, *, customer: str | None = None,
                          model: str = "", unit: str | None = None) -> LimitDecision:
        """May ``customer`` (None: the agent itself) use ``quantity`` more of ``meter``? Asks the gateway's
        usage limits (``GET /v1/agents/{agent}/limits/check``), answers from a cache of ``limit_cache_ttl``
        seconds; never raises for a failed request (``allowed`` is then ``limit_fail_open``, ``error`` says why)."""
        if not self.enabled:
            return LimitDecision(self.limits.fail_open, error="the logger has no agent id or API key")
        return await self.limits.check(meter, quantity, customer=customer, model=model, unit=unit)

    def stats(self) -> TransportStats:
        """What was delivered, dropped (by reason), queued and spooled; ``.healthy``."""
        return self.transport.stats()
