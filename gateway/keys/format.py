"""Key format ``ml_sk_`` + 64 lowercase hex (``gt8004_sk_`` accepted for upstream SDK users)."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

KEY_PREFIXES: Final = ("ml_sk_", "gt8004_sk_")
_KEY_RE: Final = re.compile(r"(?:ml_sk_|gt8004_sk_)[0-9a-f]{64}")
DISPLAY_PREFIX_LEN: Final = 10


def generate_key(prefix: str = "ml_sk_") -> str:
    """A new random key (256 bits). Shown once to the operator; only its hash is stored."""
    if prefix not in KEY_PREFIXES:
        raise ValueError(f"key prefix must be one of {KEY_PREFIXES}")
    return prefix + secrets.token_hex(32)


def is_key_format(raw: str) -> bool:
    return len(raw) <= 80 and _KEY_RE.fullmatch(raw) is not None


def hash_key(raw: str) -> str:
    """SHA-256 hex of the key (what the registry, MQTT updates and records carry)."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(raw: str) -> str:
    """The key's prefix and 4 hex characters, safe to show in listings (``ml_sk_3f9a``)."""
    return raw[: raw.find("_sk_") + 4 + 4] if "_sk_" in raw else raw[:DISPLAY_PREFIX_LEN]


__all__ = ["DISPLAY_PREFIX_LEN", "KEY_PREFIXES", "display_prefix", "generate_key", "hash_key", "is_key_format"]
