"""The key list the billing server announces, matched by SHA-256.

Meterline's bridge announces every key's status by hash on ``billing/keys/status``; servers of the
original protocol (and Meterline, for keys made for such clients) use ``billing/keys/update``. Both carry
``{"updates": [{"app_id", "api_key_sha256", "status": "ok"|"blocked", "reason"?}], "timestamp"}`` and
are merged key by key. An update carrying ``"full": true`` is a complete snapshot: it replaces what we
knew, and from then on a key absent from it is refused as unknown. Entries with the raw key (``api_key``,
or ``key`` as in the original SDK) are hashed on arrival; only the hash is kept. Raw keys are never
stored or logged here.

Trust: MQTT does not say who published a message. The client believes a key update exactly as far as
the broker's access rules let only the billing server publish on these topics (Meterline's broker does:
tenant logins cannot publish there). A full list that blocks or leaves out every key this client has
used would stop the service, so it is logged as a WARNING with counts; it is applied all the same — the
server is the authority on keys, and a genuine "all revoked" must take effect.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidApiKeyError
from ._models import key_sha256

__all__ = ["KeyInfo", "KeyRegistry"]

logger = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_KEYS = 1_000_000


@dataclass(frozen=True)
class KeyInfo:
    status: str  # "ok" | "blocked"
    app_id: str | None = None
    reason: str | None = None


class KeyRegistry:
    """What the server told us about keys; lookups are by the key's SHA-256 hex digest."""

    def __init__(self) -> None:
        self._by_hash: dict[str, KeyInfo] = {}
        self._used: set[str] = set()  # hashes of the keys this client checked (bounded by MAX_KEYS)
        self._full = False
        self._updates = 0
        self._received: asyncio.Event | None = None

    @property
    def updates_received(self) -> int:
        return self._updates

    @property
    def has_full_list(self) -> bool:
        return self._full

    def _event(self) -> asyncio.Event:
        if self._received is None:
            self._received = asyncio.Event()
        return self._received

    def rebind(self) -> None:
        """Drop loop-bound state (a new event loop is about to use the registry)."""
        self._received = None

    def reset_wait(self) -> None:
        """Forget that an update arrived (called on each new connection, before ``billing/keys/request``)."""
        self._event().clear()

    async def wait_for_update(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the next update; True if one arrived."""
        event = self._event()
        if event.is_set():
            return True
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def apply(self, message: Any) -> int:
        """Merge one ``billing/keys/update`` message; returns how many entries were taken."""
        if not isinstance(message, dict) or not isinstance(message.get("updates"), list):
            logger.warning("ignoring a billing/keys/update without an 'updates' list")
            return 0
        fresh: dict[str, KeyInfo] = {}
        for entry in message["updates"][:MAX_KEYS]:
            if not isinstance(entry, dict):
                continue
            digest = entry.get("api_key_sha256")
            if isinstance(digest, str):
                digest = digest.lower()
            raw = entry.get("api_key") or entry.get("key")
            if not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
                digest = key_sha256(raw) if isinstance(raw, str) and raw else None
            status = entry.get("status")
            if digest is None or status not in ("ok", "blocked"):
                continue
            app_id, reason = entry.get("app_id"), entry.get("reason")
            fresh[digest] = KeyInfo(status, app_id if isinstance(app_id, str) else None,
                                    reason if isinstance(reason, str) else None)
            if status == "blocked":
                logger.info("billing key %s… blocked by the server: %s", digest[:12], reason or "no reason")
        if message.get("full") is True:
            self._warn_if_all_refused(fresh)
            self._by_hash = fresh
            self._full = True
        else:
            self._by_hash.update(fresh)
        self._updates += 1
        self._event().set()
        return len(fresh)

    def _warn_if_all_refused(self, fresh: dict[str, KeyInfo]) -> None:
        if not self._used or any((info := fresh.get(h)) is not None and info.status == "ok" for h in self._used):
            return
        blocked = sum(1 for h in self._used if h in fresh)
        logger.warning("billing: a full key list refuses ALL %d key(s) this client has used (%d blocked, %d left "
                       "out; %d key(s) in the list): every call with them fails from now on. If that is not "
                       "the billing operator's doing, check that only the billing server may publish key "
                       "updates on the broker", len(self._used), blocked, len(self._used) - blocked, len(fresh))

    def lookup(self, api_key: str) -> KeyInfo | None:
        return self._by_hash.get(key_sha256(api_key))

    def check(self, api_key: str) -> KeyInfo | None:
        """Raise ``InvalidApiKeyError`` for a blocked key, or one absent from a full list; else its info."""
        digest = key_sha256(api_key)
        if len(self._used) < MAX_KEYS:
            self._used.add(digest)
        info = self._by_hash.get(digest)
        if info is not None and info.status == "blocked":
            raise InvalidApiKeyError(f"API key {digest[:12]}… is blocked by the billing server"
                                     + (f": {info.reason}" if info.reason else ""))
        if info is None and self._full:
            raise InvalidApiKeyError(f"API key {digest[:12]}… is unknown to the billing server")
        return info
