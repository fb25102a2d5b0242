"""Circuit breaker states with a fake clock."""

from __future__ import annotations

from gt8004._breaker import CircuitBreaker


def test_opens_after_three_failures_then_half_open_probe() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, cooldown=10.0, max_cooldown=30.0, clock=lambda: now[0])
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.seconds_until_probe() == 10.0
    now[0] = 10.0
    assert breaker.allow() and breaker.state == "half_open"
    breaker.record_failure()  # failed probe: reopen with a doubled cooldown
    assert breaker.state == "open" and breaker.seconds_until_probe() == 20.0
    now[0] = 30.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.seconds_until_probe() == 30.0  # capped
    now[0] = 60.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.consecutive_failures == 0
    breaker.record_failure()
    assert breaker.state == "closed"
