"""Key list from billing/keys/update: SHA-256 matching, blocked keys, full snapshots, legacy raw keys."""

from __future__ import annotations

import hashlib

import pytest
from billing_sdk import InvalidApiKeyError
from billing_sdk._keys import KeyRegistry


def _h(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_unknown_keys_pass_until_a_full_list() -> None:
    keys = KeyRegistry()
    assert keys.check("anything") is None
    keys.apply({"updates": [{"app_id": "a1", "api_key_sha256": _h("good"), "status": "ok"}], "timestamp": 1})
    assert keys.check("anything") is None  # an incremental update says nothing about other keys
    info = keys.check("good")
    assert info is not None and info.app_id == "a1"
    keys.apply({"updates": [{"app_id": "a1", "api_key_sha256": _h("good"), "status": "ok"}], "full": True,
                "timestamp": 2})
    assert keys.has_full_list
    with pytest.raises(InvalidApiKeyError, match="unknown"):
        keys.check("anything")
    assert keys.check("good") is not None


def test_blocked_key_refused_with_reason_and_unblocked_again() -> None:
    keys = KeyRegistry()
    keys.apply({"updates": [{"app_id": "a", "api_key_sha256": _h("k"), "status": "blocked",
                             "reason": "quota exceeded"}], "timestamp": 1})
    with pytest.raises(InvalidApiKeyError, match="quota exceeded") as info:
        keys.check("k")
    assert "k" not in str(info.value).split()  # never the raw key in the message
    keys.apply({"updates": [{"app_id": "a", "api_key_sha256": _h("k").upper(), "status": "ok"}], "timestamp": 2})
    assert keys.check("k") is not None


@pytest.mark.parametrize("field", ["api_key", "key"])
def test_legacy_raw_keys_are_hashed(field: str) -> None:
    keys = KeyRegistry()
    assert keys.apply({"updates": [{"app_id": "a", field: "raw-legacy", "status": "blocked"}], "timestamp": 1}) == 1
    with pytest.raises(InvalidApiKeyError):
        keys.check("raw-legacy")
    assert "raw-legacy" not in repr(keys.__dict__)


@pytest.mark.parametrize("message", [
    None, [], {"updates": "x"}, {"updates": [1, {"status": "ok"}, {"api_key_sha256": "zz", "status": "ok"},
                                             {"api_key_sha256": "a" * 64, "status": "weird"}]},
])
def test_malformed_updates_are_ignored(message: object) -> None:
    keys = KeyRegistry()
    keys.apply(message)
    assert keys.check("k") is None


async def test_wait_for_update() -> None:
    keys = KeyRegistry()
    keys.reset_wait()
    assert await keys.wait_for_update(0.01) is False
    keys.apply({"updates": [], "timestamp": 1})
    assert await keys.wait_for_update(0.01) is True


def test_a_full_list_refusing_every_key_in_use_is_applied_and_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    keys = KeyRegistry()
    keys.apply({"updates": [{"app_id": "a", "api_key_sha256": _h(k), "status": "ok"} for k in ("k1", "k2", "k3")],
                "full": True, "timestamp": 1})
    for key in ("k1", "k2"):
        keys.check(key)  # the keys this client uses
    keys.apply({"updates": [{"app_id": "a", "api_key_sha256": _h("k1"), "status": "blocked"},
                            {"app_id": "a", "api_key_sha256": _h("k3"), "status": "ok"}], "full": True, "timestamp": 2})
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "ALL 2 key(s) this client has used (1 blocked, 1 left out; 2 key(s) in the list)" in warning.getMessage()
    for key in ("k1", "k2"):
        with pytest.raises(InvalidApiKeyError):
            keys.check(key)  # applied all the same: the server is the authority on keys
    caplog.clear()
    keys.apply({"updates": [{"app_id": "a", "api_key_sha256": _h("k2"), "status": "ok"}], "full": True, "timestamp": 3})
    assert not caplog.records  # one key in use still served: an ordinary list
