"""Usage limits through `meterline up` as a user runs it: `meterline limits set` finds the running stack by
itself, a usage report made over MQTT by ``examples/billing_reporter.py`` (billing_sdk, TLS, the agent's login)
goes through the bridge, Kafka and the worker into the rollup, and `meterline limits check` and the SDK's
``check_limit`` then count it against the limit.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gt8004 import GT8004Logger

from tests.e2e.stackproc import AGENT, StackHome, StackProcess

REPO = Path(__file__).resolve().parents[2]
PROMPT = "count these five words"  # the example bills a token a word: 4 of prompt, 5 of answer
TOKENS = 9


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[StackHome, StackProcess]]:
    home = StackHome()
    running = home.launch()
    try:
        yield home, running
    finally:
        running.stop()
        home.remove()


def _meterline(home: StackHome, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meterline_cli", *args], cwd=REPO, env=home.env, text=True,
                          capture_output=True, timeout=60, check=False)


def test_a_limit_counts_usage_reported_over_mqtt_through_the_stack(stack: tuple[StackHome, StackProcess]) -> None:
    home, running = stack
    made = _meterline(home, "limits", "set", "--agent", AGENT, "--meter", "llm", "--period", "month",
                      "--limit", "10", "--customer", "e2e-cust")
    assert made.returncode == 0, made.stdout + made.stderr
    assert re.search(r"created limit lim_[0-9a-f]{20} \(alert rule limit:lim_", made.stderr), made.stderr

    banner = running.output()
    ca = re.search(r"for billing clients \(CA (\S+)\)", banner)
    login = re.search(r"MQTT login  user (\S+), password in (\S+)", banner)
    assert ca and login, banner[-3000:]
    port = re.search(r"mqtts://[\d.]+:(\d+) for billing clients", banner)
    assert port is not None
    env = dict(home.env, BILLING_MQTT_HOST="127.0.0.1", BILLING_MQTT_PORT=port.group(1),
               BILLING_MQTT_USERNAME=login.group(1), BILLING_MQTT_PASSWORD=Path(login.group(2)).read_text().strip(),
               BILLING_MQTT_CA_FILE=ca.group(1))
    assert home.api_key is not None
    done = subprocess.run([sys.executable, "examples/billing_reporter.py", "--api-key", home.api_key, "--customer",
                           "e2e-cust", PROMPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=90,
                          check=False)
    assert done.returncode == 0 and "acknowledged by the broker: 1" in done.stdout, done.stdout + done.stderr

    def check(quantity: str) -> tuple[int, dict[str, Any]]:
        ran = _meterline(home, "limits", "check", "--agent", AGENT, "--meter", "llm", "--customer", "e2e-cust",
                         "--quantity", quantity, "--format", "json")
        assert ran.returncode in (0, 1), ran.stdout + ran.stderr
        answer: dict[str, Any] = json.loads(ran.stdout)
        return ran.returncode, answer

    deadline = time.monotonic() + 60
    while (answer := check("2")[1])["used"] != TOKENS:  # the report is on its way through Kafka and the worker
        assert time.monotonic() < deadline, answer
        time.sleep(0.5)  # a poll interval: the check is the condition
    assert (answer["allowed"], answer["limit"], answer["remaining"]) == (False, "10", "1")
    code, answer = check("1")
    assert (code, answer["allowed"], answer["used"]) == (0, True, TOKENS)

    async def sdk() -> tuple[bool, int | None]:
        logger = GT8004Logger(agent_id=AGENT, api_key=home.api_key, ingest_url=f"{home.gateway}/v1/ingest")
        try:
            decision = await logger.check_limit("llm", 2, customer="e2e-cust")
            return decision.allowed, decision.used
        finally:
            await logger.close()

    assert asyncio.run(sdk()) == (False, TOKENS)
