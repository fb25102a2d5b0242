"""Alerts in `meterline up` as a user runs it: the evaluator runs inside the stack's worker, so a rule made
through the gateway fires on traffic sent through the gateway and its receiver gets one signed webhook, which
the delivery log shows. The stack evaluates every half second here (METERLINE_ALERTS_INTERVAL_S) and the
traffic is dated in the last whole minute, so nothing waits for the wall clock's minute to end.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from schemas.alerts import SIGNATURE_HEADER, verify
from tests.e2e.stackproc import AGENT, StackHome, StackProcess
from tests.integration.alerts.harness import Receiver
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[StackHome, StackProcess]]:
    home = StackHome(METERLINE_ALERTS_INTERVAL_S="0.5", METERLINE_ALERTS_LAG_S="0",
                     METERLINE_ALERTS_ALLOW_PRIVATE_URLS="1")
    proc = home.launch()
    try:
        yield home, proc
    finally:
        try:
            proc.stop(signal.SIGINT, 30)
        except Exception:  # noqa: BLE001 - cleaning up whatever state the test left
            proc.kill()
        home.remove()


@pytest.mark.timeout(300)
def test_a_rule_made_through_the_gateway_fires_inside_meterline_up(stack: tuple[StackHome, StackProcess]) -> None:
    home, proc = stack
    receiver = Receiver.reserve().listen()
    try:
        with httpx.Client(base_url=home.gateway, headers={"Authorization": f"Bearer {home.api_key}"},
                          timeout=15) as http:
            made = http.post(f"/v1/agents/{AGENT}/alerts/rules", json={
                "rule_id": "e2e-errors", "kind": "error_rate", "threshold": "0.5", "window_s": 60,
                "webhook_url": receiver.url})
            assert made.status_code == 201, made.text
            minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
            entries = [{"request_id": f"e2e-alert-{i}", "method": "POST", "path": "/run", "status_code": 500,
                        "response_ms": 5.0, "timestamp": (minute + timedelta(seconds=i)).isoformat()}
                       for i in range(10)]
            assert http.post("/v1/ingest", json={"entries": entries}).status_code == 202
            got = wait_until(lambda: receiver.received, timeout=120, what="the alert's webhook")
            assert [r.json["type"] for r in got] == ["alert.fired"]
            assert got[0].json["rule"]["rule_id"] == "e2e-errors" and got[0].json["value"] == "1"
            assert verify(made.json()["secret"], got[0].headers[SIGNATURE_HEADER], got[0].body, now=time.time())
            log = wait_until(lambda: http.get(f"/v1/agents/{AGENT}/alerts/deliveries").json()["deliveries"],
                             timeout=30, what="the delivery log")
            assert [(d["attempt"], d["status_code"], d["outcome"]) for d in log] == [(1, 200, "delivered")]
            rules = http.get(f"/v1/agents/{AGENT}/alerts/rules").json()["rules"]
            assert [(r["rule_id"], r["state"]) for r in rules] == [("e2e-errors", "firing")]
        assert len(receiver.received) == 1  # fired once, however many ticks ran since
        assert "Traceback" not in proc.output()
    finally:
        receiver.close()
