"""The pure parts of alerts: the signature scheme, the retry schedule, period and window bounds, hysteresis."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from schemas.alerts import Rule, SignatureError, event_id, sign, signature_header, verify
from stream_workers.alerts.decide import Reading, period_bounds, read_requests, transition, window_bounds
from stream_workers.alerts.webhooks import next_delay

BODY = b'{"id":"evt_1","type":"alert.fired"}'


def test_the_signature_is_stripes_scheme_and_verify_refuses_what_it_should() -> None:
    header = signature_header("whsec_abc", 1_700_000_000, BODY)
    expected = hmac.new(b"whsec_abc", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}" and sign("whsec_abc", 1_700_000_000, BODY) == expected
    assert verify("whsec_abc", header, BODY, now=1_700_000_100) == 1_700_000_000
    assert verify("whsec_abc", f"t=1700000000,v1={'0' * 64},v1={expected}", BODY, now=1_700_000_000)  # rotation
    for secret, hdr, body, now, says in [
        ("whsec_abd", header, BODY, 1_700_000_000, "no signature matches"),
        ("whsec_abc", header, BODY + b"x", 1_700_000_000, "no signature matches"),
        ("whsec_abc", header, BODY, 1_700_000_301, "s from now"),
        ("whsec_abc", "v1=" + expected, BODY, 1_700_000_000, "needs t="),
        ("whsec_abc", "garbage", BODY, 1_700_000_000, "needs t="),
    ]:
        with pytest.raises(SignatureError, match=says):
            verify(secret, hdr, body, now=now)


def test_retries_double_with_equal_jitter_up_to_the_ceiling() -> None:
    rng = random.Random(1)
    for attempt, full in [(1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0), (40, 60.0), (500, 60.0)]:
        delays = [next_delay(attempt, 10.0, 60.0, rng) for _ in range(200)]
        assert full / 2 <= min(delays) and max(delays) <= full
        assert max(delays) - min(delays) > full / 4  # jittered, not one fixed delay


def test_windows_end_at_a_whole_minute_before_the_lag_and_periods_are_utc_calendar() -> None:
    now = datetime(2026, 3, 31, 23, 59, 30, tzinfo=UTC)
    assert window_bounds(now, 300, 60) == (datetime(2026, 3, 31, 23, 53, tzinfo=UTC),
                                           datetime(2026, 3, 31, 23, 58, tzinfo=UTC))
    assert period_bounds(now, "day") == (datetime(2026, 3, 31, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert period_bounds(now, "month") == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert period_bounds(datetime(2026, 12, 5, tzinfo=UTC), "month")[1] == datetime(2027, 1, 1, tzinfo=UTC)


def test_fire_once_resolve_once_and_no_data_decides_nothing() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    over, under, unknown = (Reading(Decimal(1), b, t, t) for b in (True, False, None))
    assert [transition(s, r) for s, r in [("ok", over), ("firing", over), ("firing", under), ("ok", under),
                                          ("ok", unknown), ("firing", unknown)]] == [
        "fired", None, "resolved", None, None, None]


def test_error_rate_needs_its_minimum_of_requests() -> None:
    rule = Rule(agent_id="a", rule_id="r", kind="error_rate", threshold="0.1", min_requests=10)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    few = read_requests(rule, {"requests": 9, "errors": 9, "p95_ms": 0.0, "last_seen": None}, t, t)
    enough = read_requests(rule, {"requests": 30, "errors": 3, "p95_ms": 0.0, "last_seen": None}, t, t)
    assert few.breach is None and enough.value == Decimal("0.1") and enough.breach is False  # not over 0.1


def test_event_ids_are_the_same_whoever_computes_them() -> None:
    assert event_id("a", "r", 3) == event_id("a", "r", 3) != event_id("a", "r", 4)
    assert event_id("a", "r", 3) != event_id("a", "r3", 0) and event_id("a", "r", 1).startswith("evt_")
