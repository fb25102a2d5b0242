"""One batch, one ``POST /v1/ingest`` with retries: the HTTP half of the transport.

``Sender.send`` never raises for network or server trouble; it returns an ``Outcome`` saying what
the transport must do with the batch (done, split, put back, stop on bad credentials, drop).
Retries: delays 1 s, 2 s, 4 s (+ jitter), ``Retry-After`` honoured, 4xx other
than 408/429 never retried, 413 never resent as is.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import orjson

from ._entry import new_request_id
from ._version import SDK_VERSION
from ._wire import WireClient, WireError

__all__ = ["Batch", "Outcome", "OutcomeKind", "Sender", "new_batch_id", "parse_retry_after"]

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429})
GZIP_MIN_BYTES = 1024


def new_batch_id() -> str:
    """32 random hex digits, like ``uuid4().hex`` (3.6 µs) for 0.25 µs: see ``new_request_id``."""
    return new_request_id()


@dataclass(slots=True)
class Batch:
    """Encoded entries sent together; ``batch_id`` stays the same for every retry of the batch."""

    entries: list[bytes]
    batch_id: str = field(default_factory=new_batch_id)
    spool_path: Path | None = None  # set when the batch was claimed from the on-disk spool

    @property
    def nbytes(self) -> int:
        return sum(map(len, self.entries))


class OutcomeKind(Enum):
    DELIVERED = "delivered"      # 2xx: accepted (``rejected`` lists entries the server refused)
    SPLIT = "split"              # 413: send the halves as new batches
    FAILED = "failed"            # retryable trouble outlasted the retries: put the batch back
    AUTH = "auth"                # 401/403: stop sending until the credentials change
    DROPPED = "dropped"          # other 4xx: the server will never take this batch
    ABORTED = "aborted"          # shutdown deadline reached while waiting to retry: put back


@dataclass(slots=True)
class Outcome:
    kind: OutcomeKind
    status: int | None = None
    accepted: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


Sleep = Callable[[float], Awaitable[bool]]  # returns False when interrupted (shutdown)


class Sender:
    """Builds the request for a batch and runs the retry schedule."""

    def __init__(self, *, agent_id: str, api_key: str, ingest_url: str,
                 retry_delays: Sequence[float] = (1.0, 2.0, 4.0), jitter: float = 0.2,
                 max_retry_after: float = 60.0, use_gzip: bool = True, timeout: float = 10.0,
                 rand: Callable[[], float] = random.random) -> None:
        self.ingest_url = ingest_url
        self.retry_delays = tuple(retry_delays)
        self.jitter = jitter
        self.max_retry_after = max_retry_after
        self.use_gzip = use_gzip
        self._rand = rand
        # Requests are built here and passed to ``client.send``: ``client.post`` re-merges the
        # client's defaults on every call, about 20 % of the worker's CPU per batch.
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
        self._prefix = (b'{"agent_id":' + orjson.dumps(agent_id) + b',"sdk_version":'
                        + orjson.dumps(SDK_VERSION) + b',"batch_id":')
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                         "User-Agent": SDK_VERSION}

    def body(self, batch: Batch) -> bytes:
        return (self._prefix + orjson.dumps(batch.batch_id) + b',"entries":['
                + b",".join(batch.entries) + b"]}")

    def request_parts(self, batch: Batch) -> tuple[bytes, dict[str, str]]:
        body = self.body(batch)
        headers = dict(self._headers)
        if self.use_gzip and len(body) >= GZIP_MIN_BYTES:
            # gzip framing in one zlib call (no separate CRC pass); zlib releases the GIL while it
            # works. JSON shrinks ~10x even at level 1, 3x cheaper than level 5.
            body = zlib.compress(body, 1, wbits=31)
            headers["Content-Encoding"] = "gzip"
        return body, headers

    def delay_for(self, attempt: int, retry_after: float | None) -> float:
        """Delay before retry number ``attempt`` (0-based), honouring ``Retry-After``."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        base = self.retry_delays[attempt]
        return base * (1.0 + self.jitter * self._rand())

    async def send(self, client: httpx.AsyncClient | WireClient, batch: Batch, sleep: Sleep) -> Outcome:
        """Send ``batch`` with retries; ``sleep`` waits between attempts and may be cut short.

        With a ``WireClient`` each attempt blocks the calling thread (the worker's own loop) for
        at most the client's timeout; with an ``httpx.AsyncClient`` it is awaited.
        """
        body, headers = self.request_parts(batch)
        outcome = Outcome(OutcomeKind.FAILED)
        for attempt in range(len(self.retry_delays) + 1):
            retry_after: float | None = None
            try:
                if isinstance(client, WireClient):
                    reply = client.post(body, headers)
                    status, reply_headers, content = reply.status, reply.headers, reply.content
                else:
                    request = httpx.Request("POST", self.ingest_url, content=body, headers=headers,
                                            extensions=self._extensions)
                    response = await client.send(request)
                    status, content = response.status_code, response.content
                    reply_headers = {"retry-after": response.headers.get("retry-after", "")}
            except (httpx.HTTPError, OSError, WireError) as exc:
                outcome = Outcome(OutcomeKind.FAILED, error=f"{type(exc).__name__}: {exc}")
            else:
                outcome = self.classify(status, content)
                if outcome.kind is not OutcomeKind.FAILED:
                    return outcome
                retry_after = parse_retry_after(reply_headers.get("retry-after"))
            if attempt >= len(self.retry_delays):
                break
            delay = self.delay_for(attempt, retry_after)
            log.debug("gt8004: batch %s attempt %d failed (%s); retrying in %.2fs",
                      batch.batch_id, attempt + 1, outcome.error, delay)
            if not await sleep(delay):
                return Outcome(OutcomeKind.ABORTED, status=outcome.status, error=outcome.error)
        return outcome

    @staticmethod
    def classify(status: int, content: bytes) -> Outcome:
        if 200 <= status < 300:
            accepted, rejected = 0, []
            try:
                data = orjson.loads(content) if content else {}
                if isinstance(data, dict):
                    accepted = int(data.get("entries", 0) or 0)
                    raw = data.get("rejected") or []
                    rejected = [r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else []
            except (orjson.JSONDecodeError, TypeError, ValueError):
                pass
            return Outcome(OutcomeKind.DELIVERED, status=status, accepted=accepted, rejected=rejected)
        error = f"HTTP {status}: {content[:200].decode('utf-8', 'replace')}"
        if status == 413:
            return Outcome(OutcomeKind.SPLIT, status=status, error=error)
        if status in (401, 403):
            return Outcome(OutcomeKind.AUTH, status=status, error=error)
        if 400 <= status < 500 and status not in RETRYABLE_STATUS:
            return Outcome(OutcomeKind.DROPPED, status=status, error=error)
        return Outcome(OutcomeKind.FAILED, status=status, error=error)
