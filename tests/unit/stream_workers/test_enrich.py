"""Enrichment rules: UTC times, clamping, error/payment classes, customer derivation, header hygiene."""

from __future__ import annotations

import base64
import json
from datetime import date

import pytest

from schemas.events import BODY_LIMIT, RequestBatchRecord, RequestEntry, UsageRecord
from schemas.prices import unit_price
from stream_workers.enrich import (
    REQUEST_COLUMNS,
    USAGE_COLUMNS,
    EventTimeError,
    clamp_event_time,
    derive_customer_id,
    parse_timestamp_ms,
    request_row,
    usage_row,
)


def entry(**kw: object) -> RequestEntry:
    base: dict[str, object] = {"request_id": "r1", "method": "GET", "path": "/", "status_code": 200,
                               "response_ms": 1.5}
    base.update(kw)
    return RequestEntry(**base)  # type: ignore[arg-type]


def row(e: RequestEntry) -> dict[str, object]:
    rec = RequestBatchRecord(agent_id="ag", batch_id="b", ingested_at=1_700_000_000_000, entries=[e])
    return dict(zip(REQUEST_COLUMNS, request_row(rec, e, 1_700_000_000_000), strict=True))


@pytest.mark.parametrize(("text", "ms"), [
    ("2023-11-14T22:13:20Z", 1_700_000_000_000),
    ("2023-11-14T22:13:20.123+00:00", 1_700_000_000_123),
    ("2023-11-15T07:13:20+09:00", 1_700_000_000_000),
    ("2023-11-14T22:13:20", 1_700_000_000_000),  # naive means UTC
])
def test_timestamps_are_normalised_to_utc(text: str, ms: int) -> None:
    assert parse_timestamp_ms(text) == ms


def test_bad_timestamp_is_an_error() -> None:
    with pytest.raises(EventTimeError):
        parse_timestamp_ms("yesterday")


def test_future_and_ancient_clocks_are_clamped_to_ingested_at() -> None:
    now = 1_700_000_000_000
    assert clamp_event_time(now + 5, now, 30) == (now, "future")
    assert clamp_event_time(now - 31 * 86_400_000, now, 30) == (now, "too_old")
    assert clamp_event_time(now - 600_000, now, 30) == (now - 600_000, None)  # late is kept


@pytest.mark.parametrize(("status", "error", "payment"), [(200, 0, 0), (399, 0, 0), (400, 1, 0), (402, 0, 1),
                                                          (404, 1, 0), (500, 1, 0)])
def test_error_and_payment_classes(status: int, error: int, payment: int) -> None:
    r = row(entry(status_code=status))
    assert (r["is_error"], r["is_payment_required"]) == (error, payment)


def _jwt(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"Bearer eyJhbGciOiJub25lIn0.{body}.sig"


def test_customer_id_derivation_order() -> None:
    assert derive_customer_id(entry(customer_id="c1", headers={"X-Customer-ID": "c2"})) == "c1"
    assert derive_customer_id(entry(headers={"X-Customer-ID": "c2"})) == "c2"
    assert derive_customer_id(entry(headers={"Authorization": _jwt({"sub": "user-7"})})) == "user-7"
    assert derive_customer_id(entry(headers={"Authorization": "Bearer not-a-jwt"}, x402_payer="0xabc")) == "0xabc"
    assert derive_customer_id(entry()) == ""


def test_customer_header_wins_over_the_bearer_subject_whatever_their_order() -> None:
    headers = {"Authorization": _jwt({"sub": "user-7"}), "x-customer-id": "c2"}
    assert derive_customer_id(entry(headers=headers)) == "c2"


def test_credentials_are_not_stored_and_bodies_are_capped() -> None:
    r = row(entry(headers={"Authorization": "Bearer secret", "Cookie": "s=1", "X-Api-Key": "k", "Accept": "*/*",
                           "X-PAYMENT": "signed", "x-auth-token": "t", "X-CSRF-Token": "c"},
                  request_body="é" * BODY_LIMIT))
    assert r["headers"] == {"Accept": "*/*"}
    assert isinstance(r["request_body"], str) and len(r["request_body"].encode()) <= BODY_LIMIT
    assert r["event_time"] == 1_700_000_000.0 and r["method"] == "GET"


def test_usage_is_priced_from_the_table_on_the_event_day() -> None:
    when = 1_795_000_000_000  # 2026-11-18 UTC
    rec = UsageRecord(app_id="app", report_id="r", key_sha256="0" * 64, module="llm", model="gpt-4", usage=150,
                      timestamp=when, ingested_at=when + 1, metadata={"k": "v"})
    r = dict(zip(USAGE_COLUMNS, usage_row(rec, when), strict=True))
    price = unit_price("llm", "gpt-4", date(2026, 11, 18))
    assert price is not None and r["unit_price"] == float(price) > 0
    assert r["cost"] == pytest.approx(150 * float(price))
    assert r["metadata"] == '{"k":"v"}'
    # before the price list starts, and for a module with no meter: unpriced, stored as 0
    for module, at in (("llm", 1), ("video", when)):
        rec = UsageRecord(app_id="app", report_id="r", key_sha256="0" * 64, module=module, model="x", usage=5,
                          timestamp=at, ingested_at=at + 1)
        r = dict(zip(USAGE_COLUMNS, usage_row(rec, at), strict=True))
        assert (r["unit_price"], r["cost"]) == (0.0, 0.0)


def test_secret_headers_are_dropped_whatever_safe_names_were_seen_before() -> None:
    from stream_workers import enrich

    assert enrich._headers({"Accept": "a", "X-Trace": "t"}) == {"Accept": "a", "X-Trace": "t"}  # now known safe
    again = {"Accept": "a", "X-Trace": "t"}
    assert enrich._headers(again) is again  # the fast path keeps the dict
    assert enrich._headers({"Accept": "a", "AUTHORIZATION": "Bearer k", "x-Payment": "sig", "Cookie": "c"}) == {
        "Accept": "a"}
    for _ in range(2):  # a secret never becomes a known-safe name
        assert enrich._headers({"Authorization": "k"}) == {}


def test_the_known_safe_names_are_bounded() -> None:
    from stream_workers import enrich

    for i in range(enrich._SAFE_NAMES_MAX + 500):
        enrich._headers({f"x-made-up-{i}": "v"})
    assert len(enrich._SAFE_NAMES) == enrich._SAFE_NAMES_MAX
    assert enrich._headers({"x-made-up-999999": "v", "Cookie": "c"}) == {"x-made-up-999999": "v"}
