"""The alert evaluator on a real engine with real HTTP receivers: each rule kind fires and resolves against
generated traffic, one delivery per transition, signed; a receiver that is down gets the event after retries;
a restarted evaluator neither fires again nor forgets. Time is the injected clock; ticks are called directly.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from dashboards.alerts import list_deliveries, list_rules, put_rule, queue_test_event
from meterline.clickhouse import INSERT_SETTINGS
from schemas.alerts import EVENT_ID_HEADER, SIGNATURE_HEADER, Rule, SignatureError, verify
from stream_workers.alerts import store
from stream_workers.alerts.evaluator import AlertEvaluator
from stream_workers.alerts.settings import AlertSettings
from tests.integration.alerts.harness import T0, Clock, Receiver, requests, usage

SETTINGS = AlertSettings(lag_s=0, retry_first_s=10, retry_max_s=60, max_attempts=4, timeout_s=5,
                         allow_private_urls=True)  # the receivers listen on 127.0.0.1


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver.reserve().listen()
    yield r
    r.close()


@pytest.fixture
async def evaluator(clickhouse: Client, clock: Clock) -> AsyncIterator[AlertEvaluator]:
    ev = AlertEvaluator(lambda: clickhouse, SETTINGS, clock=clock, rng=random.Random(7), close_client=False)
    yield ev
    await ev.close()


def _rule(receiver: Receiver, **fields: Any) -> Rule:
    return Rule.model_validate({"agent_id": "agent-1", "rule_id": "r1", "webhook_url": receiver.url, **fields})


def _check_signed(received: Any, secret: str, clock: Clock) -> None:
    header = received.headers[SIGNATURE_HEADER]
    assert verify(secret, header, received.body, now=clock.now.timestamp())
    with pytest.raises(SignatureError):
        verify(secret + "x", header, received.body, now=clock.now.timestamp())
    with pytest.raises(SignatureError):
        verify(secret, header, received.body + b" ", now=clock.now.timestamp())
    assert received.headers[EVENT_ID_HEADER] == received.json["id"]


# Each scenario: the rule, then (clock minute, traffic to write before the tick, transition expected).
Step = tuple[float, Callable[[Client], None], str | None]


def _error_rate() -> tuple[dict[str, Any], list[Step]]:
    return {"kind": "error_rate", "threshold": "0.1", "window_s": 300, "min_requests": 5}, [
        (5, lambda c: requests(c, "agent-1", range(5), 10), None),
        (10, lambda c: requests(c, "agent-1", range(5, 10), 10, errors=5), "fired"),
        (11, lambda c: requests(c, "agent-1", 10, 10, errors=4), None),  # still over: no second event
        (16, lambda c: requests(c, "agent-1", range(11, 16), 10), "resolved"),
        (17, lambda c: requests(c, "agent-1", 16, 10), None),
    ]


def _p95() -> tuple[dict[str, Any], list[Step]]:
    return {"kind": "p95_latency", "threshold": "500", "window_s": 120}, [
        (2, lambda c: requests(c, "agent-1", range(2), 20, ms=80), None),
        (4, lambda c: requests(c, "agent-1", range(2, 4), 20, ms=900), "fired"),
        (5, lambda c: requests(c, "agent-1", 4, 20, ms=950), None),
        (7, lambda c: requests(c, "agent-1", range(5, 7), 20, ms=90), "resolved"),
    ]


def _no_traffic() -> tuple[dict[str, Any], list[Step]]:
    return {"kind": "no_traffic", "window_s": 180}, [
        (1, lambda c: None, None),  # never any traffic: nothing stopped
        (3, lambda c: requests(c, "agent-1", range(1, 3), 5), None),
        (5, lambda c: None, None),  # minute 2 still in the window
        (6, lambda c: None, "fired"),  # minutes 3..5 empty, traffic before
        (8, lambda c: None, None),
        (10, lambda c: requests(c, "agent-1", 9, 1), "resolved"),
    ]


def _usage_tokens() -> tuple[dict[str, Any], list[Step]]:
    day2 = (24 * 60) + 5
    return {"kind": "usage", "meter": "llm", "unit": "tokens", "period": "day", "threshold": "1000"}, [
        (1, lambda c: usage(c, "agent-1", T0, 600), None),
        (2, lambda c: usage(c, "agent-1", T0 + timedelta(minutes=1), 300, model="gpt-4"), None),
        (3, lambda c: usage(c, "agent-1", T0 + timedelta(minutes=2), 100), "fired"),  # 1000 reaches it
        (4, lambda c: usage(c, "agent-1", T0 + timedelta(minutes=3), 5000), None),
        (day2, lambda c: usage(c, "agent-1", T0 + timedelta(minutes=day2 - 1), 10), "resolved"),  # a new day
    ]


def _usage_spend() -> tuple[dict[str, Any], list[Step]]:
    # gpt-4o costs 0.000005 USD a token (schemas/prices.toml): 999,999 tokens are 4.999995 USD
    return {"kind": "usage", "meter": "llm", "model": "gpt-4o", "unit": "USD", "period": "month",
            "threshold": "5"}, [
        (1, lambda c: usage(c, "agent-1", T0, 999_999), None),
        (2, lambda c: usage(c, "agent-1", T0, 10_000_000, model="gpt-4"), None),  # another model
        (3, lambda c: usage(c, "agent-1", T0 + timedelta(minutes=2), 1), "fired"),
        (60 * 24 * 27, lambda c: None, "resolved"),  # next month
    ]


def _customer_error_rate() -> tuple[dict[str, Any], list[Step]]:
    return {"kind": "error_rate", "threshold": "0.2", "window_s": 60, "customer_id": "cust-b"}, [
        (1, lambda c: (requests(c, "agent-1", 0, 10, errors=10, customer="cust-a"),
                       requests(c, "agent-1", 0, 10, customer="cust-b")), None),
        (2, lambda c: requests(c, "agent-1", 1, 10, errors=3, customer="cust-b"), "fired"),
        (3, lambda c: requests(c, "agent-1", 2, 10, errors=2, customer="cust-b"), "resolved"),
    ]


def _customer_p95() -> tuple[dict[str, Any], list[Step]]:
    return {"kind": "p95_latency", "threshold": "500", "window_s": 120, "customer_id": "cust-b"}, [
        (2, lambda c: (requests(c, "agent-1", range(2), 20, ms=900, customer="cust-a"),
                       requests(c, "agent-1", range(2), 20, ms=80, customer="cust-b")), None),
        (4, lambda c: requests(c, "agent-1", range(2, 4), 20, ms=900, customer="cust-b"), "fired"),
        (6, lambda c: requests(c, "agent-1", range(4, 6), 20, ms=90, customer="cust-b"), "resolved"),
    ]


def _customer_no_traffic() -> tuple[dict[str, Any], list[Step]]:
    day2 = 24 * 60 + 5  # the customer's last traffic is on the day before: found in agent_customer_day
    return {"kind": "no_traffic", "window_s": 180, "customer_id": "cust-b"}, [
        (1, lambda c: requests(c, "agent-1", 0, 5, customer="cust-a"), None),  # another customer's traffic
        (3, lambda c: requests(c, "agent-1", range(1, 3), 5, customer="cust-b"), None),
        (day2, lambda c: requests(c, "agent-1", day2 - 1, 5, customer="cust-a"), "fired"),
        (day2 + 2, lambda c: requests(c, "agent-1", day2 + 1, 1, customer="cust-b"), "resolved"),
    ]


def _customer_usage() -> tuple[dict[str, Any], list[Step]]:
    return {"kind": "usage", "meter": "llm", "unit": "tokens", "period": "month", "threshold": "100",
            "customer_id": "cust-a"}, [
        (1, lambda c: usage(c, "agent-1", T0, 1000, customer="cust-b"), None),
        (2, lambda c: usage(c, "agent-1", T0, 100, customer="cust-a"), "fired"),
    ]


SCENARIOS = {"error_rate": _error_rate, "p95_latency": _p95, "no_traffic": _no_traffic, "usage": _usage_tokens,
             "usage_spend": _usage_spend, "error_rate_customer": _customer_error_rate,
             "usage_customer": _customer_usage, "p95_customer": _customer_p95,
             "no_traffic_customer": _customer_no_traffic}


@pytest.mark.parametrize("name", SCENARIOS)
async def test_each_kind_fires_and_resolves_once_with_one_signed_delivery_per_transition(
        name: str, clickhouse: Client, clock: Clock, receiver: Receiver, evaluator: AlertEvaluator) -> None:
    fields, steps = SCENARIOS[name]()
    secret = put_rule(clickhouse, _rule(receiver, **fields)).secret
    assert secret
    expected: list[str] = []
    for minute, traffic, transition in steps:
        traffic(clickhouse)
        clock.at(minute)
        report = await evaluator.tick()
        assert [e["transition"] for e in report.events] == ([transition] if transition else []), (minute, report)
        if transition:
            expected.append(transition)
        assert [r.json["type"] for r in receiver.received] == [f"alert.{t}" for t in expected], minute
        for r in receiver.received[len(expected) - 1:] if transition else []:
            _check_signed(r, secret, clock)
            assert r.json["rule"]["rule_id"] == "r1" and r.json["agent_id"] == "agent-1"
    assert len({r.json["id"] for r in receiver.received}) == len(expected)
    log = list_deliveries(clickhouse, "agent-1")
    assert sorted(d["outcome"] for d in log) == ["delivered"] * len(expected)
    assert all(d["status_code"] == 200 and d["attempt"] == 1 and d["latency_ms"] > 0 for d in log)


async def test_a_restarted_evaluator_neither_fires_again_nor_forgets(
        clickhouse: Client, clock: Clock, receiver: Receiver, evaluator: AlertEvaluator) -> None:
    put_rule(clickhouse, _rule(receiver, kind="p95_latency", threshold="200", window_s=60))
    requests(clickhouse, "agent-1", 0, 10, ms=400)
    clock.at(1)
    assert [e["transition"] for e in (await evaluator.tick()).events] == ["fired"]
    await evaluator.close()
    requests(clickhouse, "agent-1", 1, 10, ms=450)
    clock.at(2)
    restarted = AlertEvaluator(lambda: clickhouse, SETTINGS, clock=clock, close_client=False)
    try:
        again = await restarted.tick()
        assert again.events == [] and again.attempts == []
        assert list_rules(clickhouse, "agent-1")[0]["state"] == "firing"
        requests(clickhouse, "agent-1", 2, 10, ms=50)
        clock.at(3)
        assert [e["transition"] for e in (await restarted.tick()).events] == ["resolved"]
    finally:
        await restarted.close()
    assert [r.json["type"] for r in receiver.received] == ["alert.fired", "alert.resolved"]


@pytest.mark.parametrize("dedup", [True, False], ids=["event-id-token", "negative-control-no-token"])
async def test_two_evaluators_deciding_the_same_transition_write_one_event(
        dedup: bool, clickhouse: Client, clock: Clock, receiver: Receiver, evaluator: AlertEvaluator) -> None:
    """What the lease prevents, should two act for a moment: both read state ``ok`` and write the same
    transition. The event id and its dedup token keep one event; without the token there would be two."""
    receiver.status = 503  # keep the delivery pending: only the events are compared here
    put_rule(clickhouse, _rule(receiver, kind="error_rate", threshold="0.5", window_s=60))
    requests(clickhouse, "agent-1", 0, 4, errors=4)
    clock.at(1)
    stale = store.rules(clickhouse)  # what a second evaluator read before the first one wrote
    first = await evaluator.tick()
    assert [e["transition"] for e in first.events] == ["fired"] and stale[0].state == "ok"
    row = clickhouse.query("SELECT * FROM alert_events WHERE rule_id = 'r1'").result_rows[0]
    if dedup:
        store.insert_event(clickhouse, list(row))  # the second evaluator's identical decision
    else:
        clickhouse.insert("alert_events", [list(row)], settings=INSERT_SETTINGS)  # no token: a new block
    count = clickhouse.query("SELECT count() FROM alert_events WHERE rule_id = 'r1'").result_rows[0][0]
    assert count == (1 if dedup else 2)


async def test_a_receiver_down_for_a_while_gets_the_event_after_retries(
        clickhouse: Client, clock: Clock, evaluator: AlertEvaluator) -> None:
    down = Receiver.reserve()  # refuses connections, then answers 500, then 200
    secret = put_rule(clickhouse, _rule(down, kind="error_rate", threshold="0.5", window_s=60)).secret
    assert secret
    requests(clickhouse, "agent-1", 0, 4, errors=4)
    clock.at(1)
    report = await evaluator.tick()
    assert [a["outcome"] for a in report.attempts] == ["retry"] and report.attempts[0]["status_code"] == 0
    first_retry = report.attempts[0]["next_attempt_at"]
    assert clock.now + timedelta(seconds=5) <= first_retry <= clock.now + timedelta(seconds=10)  # 10 s, jittered

    clock.now = first_retry - timedelta(milliseconds=1)
    assert (await evaluator.tick()).attempts == []  # not due yet
    down.listen()
    down.status = 500
    try:
        clock.now = first_retry
        second = (await evaluator.tick()).attempts
        assert [(a["attempt"], a["status_code"], a["outcome"]) for a in second] == [(2, 500, "retry")]
        assert clock.now + timedelta(seconds=10) <= second[0]["next_attempt_at"] <= clock.now + timedelta(seconds=20)
        down.status = 200
        clock.now = second[0]["next_attempt_at"]
        third = (await evaluator.tick()).attempts
        assert [(a["attempt"], a["status_code"], a["outcome"]) for a in third] == [(3, 200, "delivered")]
        _check_signed(down.received[1], secret, clock)
        clock.now += timedelta(hours=1)
        assert (await evaluator.tick()).attempts == []  # delivered: never again
    finally:
        down.close()
    log = sorted(list_deliveries(clickhouse, "agent-1"), key=lambda d: d["attempt"])
    assert [(d["attempt"], d["status_code"], d["outcome"]) for d in log] == [
        (1, 0, "retry"), (2, 500, "retry"), (3, 200, "delivered")]
    assert "ConnectError" in log[0]["error"] and "HTTP 500" in log[1]["error"] and log[2]["error"] == ""
    assert len(down.received) == 2 and down.received[0].body == down.received[1].body
    assert {r.headers[EVENT_ID_HEADER] for r in down.received} == {log[0]["event_id"]}


async def test_a_delivery_that_never_succeeds_stops_at_the_attempt_limit(
        clickhouse: Client, clock: Clock, receiver: Receiver, evaluator: AlertEvaluator) -> None:
    receiver.status = 500
    put_rule(clickhouse, _rule(receiver, kind="error_rate", threshold="0.5", window_s=60))
    requests(clickhouse, "agent-1", 0, 4, errors=4)
    clock.at(1)
    outcomes = []
    for _ in range(SETTINGS.max_attempts + 2):
        outcomes += [a["outcome"] for a in (await evaluator.tick()).attempts]
        clock.now += timedelta(seconds=SETTINGS.retry_max_s)
    assert outcomes == ["retry"] * (SETTINGS.max_attempts - 1) + ["failed"]
    assert len(receiver.received) == SETTINGS.max_attempts


async def test_a_test_delivery_goes_through_the_outbox_and_changes_no_state(
        clickhouse: Client, clock: Clock, receiver: Receiver, evaluator: AlertEvaluator) -> None:
    secret = put_rule(clickhouse, _rule(receiver, kind="no_traffic", window_s=60)).secret
    assert secret
    event = queue_test_event(clickhouse, "agent-1", "r1", now=clock.now)
    report = await evaluator.tick()
    assert report.events == [] and [a["event_id"] for a in report.attempts] == [event["event_id"]]
    assert [r.json["type"] for r in receiver.received] == ["alert.test"]
    _check_signed(receiver.received[0], secret, clock)
    assert list_rules(clickhouse, "agent-1")[0]["state"] == "ok"
    assert json.loads(receiver.received[0].body)["value"] is None


async def test_a_webhook_into_a_private_network_is_refused_unless_allowed(
        clickhouse: Client, clock: Clock, receiver: Receiver) -> None:
    """An agent's key must not make the worker POST into the services' network (ClickHouse's HTTP interface...)."""
    put_rule(clickhouse, _rule(receiver, kind="error_rate", threshold="0.5", window_s=60))
    requests(clickhouse, "agent-1", 0, 4, errors=4)
    clock.at(1)
    strict = AlertEvaluator(lambda: clickhouse, SETTINGS.model_copy(update={"allow_private_urls": False}),
                            clock=clock, close_client=False)
    try:
        attempts = (await strict.tick()).attempts
    finally:
        await strict.close()
    assert [(a["status_code"], a["outcome"]) for a in attempts] == [(0, "failed")]
    assert "non-public address" in list_deliveries(clickhouse, "agent-1")[0]["error"]
    assert receiver.received == []
