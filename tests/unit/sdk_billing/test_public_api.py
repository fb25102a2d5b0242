"""The public surface is what we mean to export (sdk/README.md), and the singleton behaves as documented."""

from __future__ import annotations

import inspect

import billing_sdk
import pytest
from billing_sdk import BillingClient, BillingError, UsageData, get_billing_client


def test_exported_names() -> None:
    assert sorted(billing_sdk.__all__) == [
        "AuthenticationError", "BillingClient", "BillingError", "BrokerConnectionError", "InvalidApiKeyError",
        "InvalidUsageError", "LimitChecker", "LimitDecision", "MissingApiKeyError", "NotConnectedError",
        "QueueStats", "StreamMetadata",
        "TlsVerificationError", "UsageData", "get_billing_client", "report_usage", "require_api_key",
    ]
    for name in billing_sdk.__all__:
        assert getattr(billing_sdk, name) is not None


def test_every_exception_has_one_root() -> None:
    for name in billing_sdk.__all__:
        obj = getattr(billing_sdk, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, BillingError), name


def test_seed_typo_alias_warns_and_is_not_exported() -> None:
    with pytest.warns(DeprecationWarning, match="misspelling"):
        alias = billing_sdk.report_usage_usage  # type: ignore[attr-defined]
    assert alias is billing_sdk.report_usage
    assert "report_usage_usage" not in billing_sdk.__all__
    with pytest.raises(AttributeError):
        billing_sdk.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def test_singleton_and_get_billing_client() -> None:
    assert get_billing_client() is None
    first = BillingClient("localhost", 8883, "user", "pass")
    again = BillingClient("elsewhere", 1883, "other", "secret", tls=False)
    assert again is first
    assert get_billing_client() is first
    assert first._config.host == "localhost" and first._config.tls  # the second call changed nothing
    assert not first.is_connected()


def test_signatures_match_spec() -> None:
    params = inspect.signature(BillingClient.__init__).parameters
    assert list(params)[:5] == ["self", "broker_host", "broker_port", "username", "password"]
    assert params["broker_port"].default == 8883
    for keyword in ("ca_file", "tls", "insecure", "client_id", "queue_size", "spool_path"):
        assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["tls"].default is True and params["insecure"].default is False
    assert list(inspect.signature(billing_sdk.report_usage).parameters) == [
        "api_key", "module", "model", "usage", "metadata"]
    data = UsageData(api_key="k", module="llm", model="m", usage=1)
    assert data.metadata is None


def test_password_not_in_repr() -> None:
    client = BillingClient("localhost", 8883, "user", "hunter2-secret")
    assert "hunter2-secret" not in repr(client._config)


def test_reconnect_backoff_grows_with_jitter_and_is_capped() -> None:
    client = BillingClient("localhost", 8883, "u", "p", reconnect_min_delay=0.5, reconnect_max_delay=30)
    first = [client._backoff_delay(0) for _ in range(50)]
    assert all(0.375 <= d <= 0.625 for d in first) and len(set(first)) > 1
    assert all(0.75 <= client._backoff_delay(1) <= 1.25 for _ in range(20))
    assert all(22.5 <= client._backoff_delay(n) <= 37.5 for n in (7, 20, 1000))
