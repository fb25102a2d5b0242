"""Raw values of legacy MQTT keys, encrypted at rest with the server secret ``METERLINE_KEY_SECRET``.

Clients of the original billing protocol find out whether a key may be served by comparing RAW keys
from ``billing/keys/update``, and fail on a whole message if one entry lacks ``api_key``. Meterline
keeps no raw key, except for keys the operator makes for such clients (``meterline keys create --agent
X --legacy-mqtt``): their record in the keys topic carries the raw value encrypted with Fernet
(AES-128-CBC with HMAC-SHA256, from the ``cryptography`` package) under a key derived from the secret
with HKDF-SHA256. Every bridge replica follows the keys topic and decrypts a legacy key once, when its
record arrives (never per report), to announce it to legacy logins; a decrypted value must hash to the
record's key hash, so a record cannot make the bridge announce some other key.

``METERLINE_KEY_SECRET`` holds one secret, or several separated by commas: the first encrypts, all of
them decrypt (rotate by putting a new one first). ``meterline up`` generates one into
``$METERLINE_HOME/key-secret`` (0600); the ``meterline`` commands of another terminal find it there.
A missing or wrong secret is a clear error when a legacy key is made, and a logged error (the key is
not announced) in the bridge; nothing else stops.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from pathlib import Path
from typing import Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import RegistryError
from gateway.keys.format import hash_key
from meterline.local.secret_file import ensure_secret, read_secret
from meterline.paths import data_home

KEY_SECRET_FILE: Final = "key-secret"  # noqa: S105 - a file name
MIN_SECRET_CHARS: Final = 32
_INFO: Final = b"meterline legacy mqtt keys v1"


class LegacyKeyError(RegistryError):
    """No server secret, a secret too short, or a legacy key that does not decrypt under it."""

    code = "legacy_key"


def key_secret_path(home: Path | None = None) -> Path:
    return (home or data_home()) / KEY_SECRET_FILE


def new_key_secret() -> str:
    """A fresh server secret: 256 random bits."""
    return secrets.token_urlsafe(32)


def ensure_local_key_secret(home: Path | None = None) -> Path:
    """``meterline up``: the local stack's secret file, made (0600) on the first run; returns its path."""
    path = key_secret_path(home)
    ensure_secret(path, new_key_secret)
    return path


def _fernet(secret: str) -> Fernet:
    if len(secret) < MIN_SECRET_CHARS:
        raise LegacyKeyError(f"METERLINE_KEY_SECRET: each secret needs at least {MIN_SECRET_CHARS} characters "
                             "(e.g. `openssl rand -hex 32`)")
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


class KeyCipher:
    """Encrypts raw legacy keys for the keys topic and decrypts them for the bridge."""

    def __init__(self, secret: str) -> None:
        parts = [p.strip() for p in secret.split(",") if p.strip()]
        if not parts:
            raise LegacyKeyError("METERLINE_KEY_SECRET is empty")
        self._fernet = MultiFernet([_fernet(p) for p in parts])

    @classmethod
    def load(cls, secret: str | None, home: Path | None = None) -> KeyCipher | None:
        """From ``secret`` (the setting), else the local stack's file; None when neither exists."""
        value = secret or read_secret(key_secret_path(home))
        return cls(value) if value else None

    def encrypt(self, raw_key: str) -> str:
        return self._fernet.encrypt(raw_key.encode()).decode("ascii")

    def decrypt(self, token: str, key_sha256: str) -> str:
        """The raw key in ``token``; ``LegacyKeyError`` unless it decrypts and hashes to ``key_sha256``."""
        try:
            raw = self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError, ValueError):
            raise LegacyKeyError(f"legacy key {key_sha256[:12]}… does not decrypt with METERLINE_KEY_SECRET "
                                 "(a different or rotated-out secret?)") from None
        if not hmac.compare_digest(hash_key(raw), key_sha256):
            raise LegacyKeyError(f"legacy key {key_sha256[:12]}… decrypts to a different key: record refused")
        return raw


__all__ = ["KEY_SECRET_FILE", "KeyCipher", "LegacyKeyError", "ensure_local_key_secret", "key_secret_path",
           "new_key_secret"]
