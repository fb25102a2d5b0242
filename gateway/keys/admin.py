"""Operator actions on the keys topic: create, list, revoke (used by ``meterline keys``)."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway.errors import RegistryError
from gateway.keys.format import display_prefix, generate_key, hash_key, is_key_format
from gateway.keys.legacy import KeyCipher
from gateway.keys.registry import KeyRegistry
from schemas.events import ApiKeyRecord, request_batch_encoder

_MIN_HASH_PREFIX = 8


async def publish_record(bootstrap_servers: str, topic: str, record: ApiKeyRecord) -> None:
    """Write one registry record (idempotent producer, acks=all), keyed by the key hash."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True,
                                client_id="meterline-keys-admin")
    try:
        await producer.start()
        await producer.send_and_wait(topic, request_batch_encoder.encode(record),
                                     key=record.key_sha256.encode())
    except (KafkaError, OSError) as exc:
        raise RegistryError(f"cannot write to the keys topic {topic!r}: {exc!r}") from exc
    finally:
        await producer.stop()


async def create_key(bootstrap_servers: str, topic: str, agent_id: str, *, name: str | None = None,
                     prefix: str = "ml_sk_", legacy: KeyCipher | None = None) -> tuple[str, ApiKeyRecord]:
    """Create an active key for ``agent_id``; returns (raw key — show it once, its record).

    ``legacy``: the key is for a client of the original MQTT protocol, which compares raw keys; its raw
    value is stored encrypted with this cipher so the bridge can announce it (``gateway.keys.legacy``).
    """
    if not agent_id or len(agent_id) > 256:
        raise RegistryError("agent id must be 1-256 characters")
    raw = generate_key(prefix)
    record = ApiKeyRecord(key_sha256=hash_key(raw), agent_id=agent_id, status="active",
                          created_at=int(time.time() * 1000), name=name, prefix=display_prefix(raw),
                          legacy_key=legacy.encrypt(raw) if legacy is not None else None)
    await publish_record(bootstrap_servers, topic, record)
    return raw, record


async def list_keys(bootstrap_servers: str, topic: str, timeout: float = 30.0) -> list[ApiKeyRecord]:
    registry = KeyRegistry(bootstrap_servers, topic)
    await registry.start(timeout)
    try:
        return registry.records()
    finally:
        await registry.stop()


def match_keys(records: list[ApiKeyRecord], ident: str) -> list[ApiKeyRecord]:
    """Records named by a raw key, a full hash, a hash prefix (≥ 8 hex) or a display prefix."""
    if is_key_format(ident):
        ident = hash_key(ident)
    by_hash = [r for r in records if r.key_sha256 == ident]
    if by_hash:
        return by_hash
    if "_sk_" in ident:
        if len(ident) < ident.find("_sk_") + 4 + 4:
            return []  # at least the 4 hex characters a listing shows
        # the stored display prefix is short; compare over the common length
        return [r for r in records if r.prefix and r.prefix[:len(ident)] == ident[:len(r.prefix)]]
    if len(ident) >= _MIN_HASH_PREFIX:
        return [r for r in records if r.key_sha256.startswith(ident.lower())]
    return []


async def revoke_key(bootstrap_servers: str, topic: str, ident: str, timeout: float = 30.0) -> ApiKeyRecord:
    """Revoke the one key ``ident`` names; refuses unknown or ambiguous identifiers."""
    matches = match_keys(await list_keys(bootstrap_servers, topic, timeout), ident)
    if not matches:
        raise RegistryError(f"no key matches {ident[:16]!r} (give a key prefix like ml_sk_3f9a or a hash prefix)")
    if len(matches) > 1:
        raise RegistryError(f"{len(matches)} keys match {ident[:16]!r}; give more characters of the hash")
    current = matches[0]
    revoked = ApiKeyRecord(key_sha256=current.key_sha256, agent_id=current.agent_id, status="revoked",
                           created_at=current.created_at, name=current.name, prefix=current.prefix,
                           revoked_at=int(time.time() * 1000),
                           legacy_key=current.legacy_key)  # legacy clients learn it is blocked by its raw value
    await publish_record(bootstrap_servers, topic, revoked)
    return revoked


__all__ = ["create_key", "list_keys", "match_keys", "publish_record", "revoke_key"]
