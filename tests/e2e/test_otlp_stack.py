"""OpenTelemetry ingest through `meterline up` as a user runs it: ``examples/otel_agent.py`` (a FastAPI agent
instrumented with OpenTelemetry's FastAPI instrumentation, the SDK and the OTLP/HTTP exporter, no Meterline SDK)
is configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables only, with the API key the stack printed, and
its requests, customers, tool and GenAI token usage appear in the read API the dashboard reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stackproc import AGENT, OPERATOR_TOKEN, StackHome, StackProcess

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 4


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[StackHome, StackProcess]]:
    home = StackHome()
    running = home.launch()
    try:
        yield home, running
    finally:
        running.stop()
        home.remove()


def _read(home: StackHome, view: str) -> Any:
    resp = httpx.get(f"{home.gateway}/v1/agents/{AGENT}/{view}", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                     timeout=30)
    assert resp.status_code == 200, (view, resp.status_code, resp.text)
    return resp.json()


def _poll(read: Callable[[], Any], expected: Any, what: str, timeout: float = 60) -> None:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = read()
        if last == expected:
            return
        time.sleep(0.3)  # a poll interval: the read API is the condition
    raise AssertionError(f"{what}: expected {expected!r}, last read {last!r}")


def test_otel_example_agent_reports_through_meterline_up(stack: tuple[StackHome, StackProcess]) -> None:
    home, running = stack
    assert f"OTLP        {home.gateway}/v1/traces" in running.output()  # the banner says where to point exporters
    env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=home.gateway, OTEL_SERVICE_NAME="weather-agent",
               OTEL_EXPORTER_OTLP_HEADERS=f"Authorization=Bearer%20{home.api_key}",
               OTEL_EXPORTER_OTLP_COMPRESSION="gzip")
    done = subprocess.run([sys.executable, "examples/otel_agent.py", "--requests", str(REQUESTS)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Failed to export" not in done.stderr, done.stderr

    _poll(lambda: _read(home, "stats")["total_requests"], REQUESTS, "the agent's requests")
    customers = _read(home, "customers")["customers"]
    assert sorted((c["customer_id"], c["requests"]) for c in customers) == [("customer-0", 2), ("customer-1", 2)]
    tools = _read(home, "tools")["tools"]
    assert [(t["tool_name"], t["requests"]) for t in tools] == [("get_weather", REQUESTS)]
    # each call: 16 input tokens ("weather in city N" + 12) and 7 output tokens, on the llm meter, priced
    _poll(lambda: [(ln["meter"], ln["model"], ln["quantity"]) for ln in _read(home, "usage")["lines"]],
          [("llm", "gpt-4o", REQUESTS * 23)], "the GenAI usage")
