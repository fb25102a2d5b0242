"""Broker settings: environment overrides, and a TLS context that verifies by default."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from billing_sdk import BillingError
from billing_sdk._config import BrokerConfig, apply_env, make_ssl_context

from meterline.local.mosquitto import make_certificates

BASE = BrokerConfig("localhost", 8883, "user", "pass")


def test_env_overrides_arguments() -> None:
    env = {"BILLING_MQTT_HOST": "broker.internal", "BILLING_MQTT_PORT": "18883", "BILLING_MQTT_USERNAME": "u2",
           "BILLING_MQTT_PASSWORD": "p2", "BILLING_MQTT_CA_FILE": "/etc/ca.pem"}
    config = apply_env(BASE, env)
    assert (config.host, config.port, config.username, config.password, config.ca_file) == (
        "broker.internal", 18883, "u2", "p2", "/etc/ca.pem")
    assert config.tls and not config.insecure
    assert apply_env(BASE, {"BILLING_MQTT_HOST": ""}) == BASE  # empty means unset


@pytest.mark.parametrize("port", ["abc", "0", "70000"])
def test_bad_port_in_env(port: str) -> None:
    with pytest.raises(BillingError, match="BILLING_MQTT_PORT"):
        apply_env(BASE, {"BILLING_MQTT_PORT": port})


def test_default_context_verifies() -> None:
    ctx = make_ssl_context(BASE)
    assert ctx is not None
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2


def test_insecure_and_plain() -> None:
    ctx = make_ssl_context(BrokerConfig("h", 8883, None, insecure=True))
    assert ctx is not None and ctx.verify_mode is ssl.CERT_NONE and not ctx.check_hostname
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    assert make_ssl_context(BrokerConfig("h", 1883, None, tls=False)) is None


def test_ca_file_and_ssl_cert_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_certificates(tmp_path)
    ca = str(tmp_path / "ca.crt")
    with_ca = make_ssl_context(BrokerConfig("h", 8883, None, ca_file=ca))
    assert with_ca is not None
    assert [c["subject"] for c in with_ca.get_ca_certs()] == [((("commonName", "Meterline local CA"),),)]
    monkeypatch.setenv("SSL_CERT_FILE", ca)
    default = make_ssl_context(BASE)
    assert default is not None
    assert any(c["subject"] == ((("commonName", "Meterline local CA"),),) for c in default.get_ca_certs())


def test_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BillingError, match="CA file"):
        make_ssl_context(BrokerConfig("h", 8883, None, ca_file=str(tmp_path / "nope.pem")))
