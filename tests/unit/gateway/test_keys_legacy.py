"""Raw values of legacy MQTT keys: encrypted at rest, decrypted only with the right secret, bound to the hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.keys.format import generate_key, hash_key
from gateway.keys.legacy import KeyCipher, LegacyKeyError, ensure_local_key_secret

SECRET = "s" * 40


def test_round_trip_and_nothing_readable_at_rest() -> None:
    raw = generate_key()
    token = KeyCipher(SECRET).encrypt(raw)
    assert raw not in token and raw[6:] not in token
    assert KeyCipher(SECRET).decrypt(token, hash_key(raw)) == raw


def test_a_wrong_secret_or_a_swapped_record_is_refused() -> None:
    raw, other = generate_key(), generate_key()
    token = KeyCipher(SECRET).encrypt(raw)
    with pytest.raises(LegacyKeyError, match="does not decrypt"):
        KeyCipher("t" * 40).decrypt(token, hash_key(raw))
    with pytest.raises(LegacyKeyError, match="different key"):  # a ciphertext copied into another key's record
        KeyCipher(SECRET).decrypt(token, hash_key(other))


def test_rotation_new_secret_first_old_ones_still_decrypt() -> None:
    raw = generate_key()
    old = KeyCipher(SECRET).encrypt(raw)
    rotated = KeyCipher("n" * 40 + "," + SECRET)
    assert rotated.decrypt(old, hash_key(raw)) == raw
    with pytest.raises(LegacyKeyError):
        KeyCipher(SECRET).decrypt(rotated.encrypt(raw), hash_key(raw))  # new records use the new secret


def test_short_or_missing_secrets(tmp_path: Path) -> None:
    with pytest.raises(LegacyKeyError, match="at least 32"):
        KeyCipher("short")
    assert KeyCipher.load(None, tmp_path) is None  # no setting, no local file: legacy keys unavailable
    path = ensure_local_key_secret(tmp_path)
    assert path.stat().st_mode & 0o077 == 0
    assert KeyCipher.load(None, tmp_path) is not None
