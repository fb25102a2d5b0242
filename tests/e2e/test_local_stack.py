"""The whole stack as the README starts it (`meterline up`), driven by our examples and the seed documents' code.

Our own examples (`examples/`: a FastAPI agent under uvicorn, a billing reporter) run as a user runs
them, for an agent of their own whose key `meterline keys create` made. The seed guide's FastAPI example
(gt8004 middleware) and the billing README's complete example run unchanged, with the placeholder API
key replaced by the key `meterline up` printed; without the seed documents (a plain clone) those are
skipped, or fail under METERLINE_REQUIRE_SEEDS=1 (tests/seeds.py). Both are configured only through the
environment variables their SDKs document. Requests made through the middleware and usage reports
published over MQTT/TLS must then appear in the read API and on the web page.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from meterline.local.ports import free_port, wait_for_port
from tests.integration.dashboards.test_billing_surfaces import render
from tests.seeds import needs_seed, seed

AGENT = "demo-agent"
EXAMPLE_AGENT = "example-agent"  # the examples' own agent: its numbers do not mix with the seed tests'
BILLING_USER, BILLING_PASS = "billing_user", "billing_pass"  # as in the billing README's example
REPO = Path(__file__).resolve().parents[2]
GT8004_SEED, BILLING_SEED = "gt8004-sdk-guide.ko.md", "billing-sdk.zh.md"
GPT_4O_PER_TOKEN = Decimal("0.000005")  # USD, the price list's llm/gpt-4o, written here independently


@dataclass
class Stack:
    proc: subprocess.Popen[str]
    output: list[str]
    home: Path
    gateway: str
    mqtt_tls_port: int
    api_key: str
    env: dict[str, str]
    kafka: str

    @property
    def ca_file(self) -> Path:
        return self.home / "mosquitto" / "certs" / "ca.crt"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8", errors="replace"), re.S)


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="meterline-e2e-"))
    ports = {name: free_port() for name in ("kafka", "ctrl", "mqtt", "mqtts", "gateway", "web")}
    env = dict(
        os.environ,
        METERLINE_HOME=str(home),
        METERLINE_KAFKA_PORT=str(ports["kafka"]),
        METERLINE_KAFKA_CONTROLLER_PORT=str(ports["ctrl"]),
        METERLINE_MQTT_PORT=str(ports["mqtt"]),
        METERLINE_MQTT_TLS_PORT=str(ports["mqtts"]),
        METERLINE_GATEWAY_PORT=str(ports["gateway"]),
        METERLINE_WORKER_WEB_PORT=str(ports["web"]),
        METERLINE_MQTT_USERS=f"{BILLING_USER}:{BILLING_PASS}",
        METERLINE_SINK_INTERVAL_S="0.5",
        PYTHONUNBUFFERED="1",
    )
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MQTT_URL", "CLICKHOUSE_URL", "METERLINE_TOPIC_PREFIX"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "meterline_cli", "up"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: output.extend(iter(stdout.readline, "")), daemon=True).start()
    try:
        _wait_for(lambda: any("Ctrl-C stops everything" in line for line in output) or proc.poll() is not None,
                  180, "meterline up to report readiness")
        text = "".join(output)
        assert proc.poll() is None, text[-3000:]
        match = re.search(r"API key for agent demo-agent \(shown once, store it now\): (\S+)", text)
        assert match, text[-3000:]
        assert f"http://127.0.0.1:{ports['gateway']}/v1/ingest" in text
        yield Stack(proc, output, home, f"http://127.0.0.1:{ports['gateway']}", ports["mqtts"], match.group(1), env,
                    f"127.0.0.1:{ports['kafka']}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        import shutil

        shutil.rmtree(home, ignore_errors=True)


def _get(stack: Stack, path: str, key: str | None = None) -> Any:
    resp = httpx.get(f"{stack.gateway}{path}", headers={"Authorization": f"Bearer {key or stack.api_key}"}, timeout=30)
    assert resp.status_code == 200, (path, resp.status_code, resp.text)
    return resp.json()


@pytest.fixture(scope="module")
def example_key(stack: Stack) -> str:
    """A key for the examples' agent, made as a user makes one, once the running gateway knows it."""
    done = subprocess.run([sys.executable, "-m", "meterline_cli", "keys", "create", "--agent", EXAMPLE_AGENT],
                          env=dict(stack.env, KAFKA_BOOTSTRAP_SERVERS=stack.kafka), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"^key\s+(\S+)$", done.stdout, re.M)
    assert match, done.stdout
    key = match.group(1)

    def accepted() -> bool:
        return httpx.get(f"{stack.gateway}/v1/agents/{EXAMPLE_AGENT}/stats", headers={"Authorization": f"Bearer {key}"},
                         timeout=30).status_code == 200

    _wait_for(accepted, 30, "the gateway to know the new key")
    return key


def test_example_fastapi_agent_through_the_stack(stack: Stack, example_key: str) -> None:
    port = free_port()
    env = dict(os.environ, GT8004_AGENT_ID=EXAMPLE_AGENT, GT8004_API_KEY=example_key,
               GT8004_INGEST_URL=f"{stack.gateway}/v1/ingest")
    # --app-dir, not examples.fastapi_agent: gmqtt (billing_sdk's MQTT client) installs a package named examples
    app = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", "examples", "fastapi_agent:app",
                            "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env)
    try:
        wait_for_port("127.0.0.1", port, 30, "the example FastAPI agent")
        acme = {"X-Customer-ID": "acme"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/").json() == {"agent": EXAMPLE_AGENT, "tools": ["summarize", "translate"]}
            summary = http.post("/tools/summarize", json={"text": "one two three"}, headers=acme)
            assert summary.json() == {"summary": "one two three", "words": 3}
            paid = http.post("/tools/translate", json={"text": "hello"}, headers=acme)
            assert paid.json() == {"translation": "olleh"} and paid.headers["x-402-amount"] == "0.01"
    finally:
        app.send_signal(signal.SIGTERM)  # the lifespan closes (and flushes) the logger
        assert app.wait(30) in (0, -signal.SIGTERM)

    stats = _wait_for(lambda: (s := _get(stack, f"/v1/agents/{EXAMPLE_AGENT}/stats", example_key)
                               )["total_requests"] >= 3 and s, 60, "the example agent's requests in the read API")
    assert stats["total_requests"] == 3  # the start-up ping is not traffic
    assert stats["revenue"] == pytest.approx(0.01)
    customers = _get(stack, f"/v1/agents/{EXAMPLE_AGENT}/customers", example_key)["customers"]
    assert [(c["customer_id"], c["requests"]) for c in customers] == [("acme", 2)]
    tools = _get(stack, f"/v1/agents/{EXAMPLE_AGENT}/tools", example_key)["tools"]
    assert sorted((t["tool_name"], t["requests"], t["revenue"]) for t in tools) == [
        ("index", 1, 0.0), ("summarize", 1, 0.0), ("translate", 1, pytest.approx(0.01))]


def _billing_env(stack: Stack) -> dict[str, str]:
    return dict(os.environ, BILLING_MQTT_HOST="127.0.0.1", BILLING_MQTT_PORT=str(stack.mqtt_tls_port),
                BILLING_MQTT_USERNAME=BILLING_USER, BILLING_MQTT_PASSWORD=BILLING_PASS,
                BILLING_MQTT_CA_FILE=str(stack.ca_file))


def test_example_billing_reporter_through_the_stack(stack: Stack, example_key: str) -> None:
    reporter = [sys.executable, str(REPO / "examples" / "billing_reporter.py")]
    refused = subprocess.run([*reporter, "--api-key", "ml_sk_" + "0" * 64, "free lunch"], env=_billing_env(stack),
                             capture_output=True, text=True, timeout=90, check=False)
    assert refused.returncode == 1 and "InvalidApiKeyError" in refused.stderr, refused.stdout + refused.stderr

    done = subprocess.run([*reporter, "--api-key", example_key, "--customer", "acme-e2e", "count these five words"],
                          env=_billing_env(stack), capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Echo: count these five words" in done.stdout
    assert "usage reports acknowledged by the broker: 1, dropped: 0" in done.stdout

    def usage_rows() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = _get(stack, f"/v1/agents/{EXAMPLE_AGENT}/usage?period=day", example_key)["lines"]
        return rows

    rows = _wait_for(usage_rows, 60, "the example's usage report in the read API")
    assert [(r["module"], r["model"], r["unit"], r["quantity"]) for r in rows] == [
        ("llm", "gpt-4o", "tokens", 4 + 5)]  # prompt + answer
    assert (Decimal(rows[0]["amount"]), rows[0]["currency"]) == (9 * GPT_4O_PER_TOKEN, "USD")  # exact
    day = rows[0]["period_start"]  # the statement of that day's month names the end customer
    statement = _get(stack, f"/v1/agents/{EXAMPLE_AGENT}/statement?month={day[:7]}", example_key)
    assert [(ln["customer_id"], ln["quantity"], ln["amount"]) for ln in statement["lines"]] == [
        ("acme-e2e", 9, str(9 * GPT_4O_PER_TOKEN))]


@needs_seed(GT8004_SEED)
def test_seed_fastapi_example_through_the_stack(stack: Stack, tmp_path: Path) -> None:
    block = next(b for b in _python_blocks(seed(GT8004_SEED))
                 if "app.add_middleware(GT8004Middleware, logger=logger)" in b)
    (tmp_path / "seed_app.py").write_text(block)
    port = free_port()
    env = dict(os.environ, GT8004_AGENT_ID=AGENT, GT8004_API_KEY=stack.api_key,
               GT8004_INGEST_URL=f"{stack.gateway}/v1/ingest")
    app = subprocess.Popen([sys.executable, "-m", "uvicorn", "seed_app:app", "--port", str(port),
                            "--log-level", "warning"], cwd=tmp_path, env=env)
    try:
        wait_for_port("127.0.0.1", port, 30, "the seed FastAPI app")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/", headers={"X-Customer-ID": "customer-e2e"}).json() == {"message": "Hello World"}
            assert http.post("/chat", json={"message": "hi"}, headers={"X-Customer-ID": "customer-e2e"}
                             ).status_code == 200
    finally:
        app.send_signal(signal.SIGTERM)  # the example's shutdown hook closes (and flushes) the logger
        # uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is a clean exit
        assert app.wait(30) in (0, -signal.SIGTERM)

    stats = _wait_for(lambda: (s := _get(stack, f"/v1/agents/{AGENT}/stats"))["total_requests"] >= 2 and s,
                      60, "the two requests in the read API")
    assert stats["total_requests"] == 2
    customers = _get(stack, f"/v1/agents/{AGENT}/customers")
    assert [c["customer_id"] for c in customers["customers"]] == ["customer-e2e"]
    logs = _get(stack, f"/v1/agents/{AGENT}/logs?limit=10")["logs"]
    assert sorted(entry["path"] for entry in logs) == ["/", "/chat"]


@needs_seed(BILLING_SEED)
def test_seed_billing_example_through_the_stack(stack: Stack, tmp_path: Path) -> None:
    block = next(b for b in _python_blocks(seed(BILLING_SEED))
                 if "asyncio.run(main())" in b and "LLMService" in b)
    script = tmp_path / "billing_example.py"
    script.write_text(block.replace("your-api-key", stack.api_key))
    env = dict(os.environ, BILLING_MQTT_HOST="127.0.0.1", BILLING_MQTT_PORT=str(stack.mqtt_tls_port),
               BILLING_MQTT_CA_FILE=str(stack.ca_file))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=90,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Hello from AI" in done.stdout

    def usage_rows() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = _get(stack, f"/v1/agents/{AGENT}/usage?period=day")["lines"]
        return rows

    rows = _wait_for(usage_rows, 60, "the usage report in the read API")
    assert [(r["module"], r["model"], r["unit"], r["quantity"]) for r in rows] == [
        ("llm", "gpt-3.5-turbo", "tokens", 100)]
    assert Decimal(rows[0]["amount"]) == 100 * Decimal("0.0000015")


@pytest.mark.parametrize("source", [
    pytest.param("examples"),
    pytest.param("seeds", marks=[needs_seed(GT8004_SEED), needs_seed(BILLING_SEED)]),
])
def test_dashboard_page_shows_both(stack: Stack, example_key: str, source: str) -> None:
    """The web page shows the requests and the usage report the tests above sent."""
    if source == "seeds":  # skipped above without the seeds; fails here when they are required
        for name in (GT8004_SEED, BILLING_SEED):
            seed(name)
    agent, key, requests, usage_row = (
        (EXAMPLE_AGENT, example_key, 3, ["acme-e2e", "llm", "gpt-4o", "tokens", "1", "9"]) if source == "examples"
        else (AGENT, stack.api_key, 2, ["(none)", "llm", "gpt-3.5-turbo", "tokens", "1", "100"]))
    _wait_for(lambda: _get(stack, f"/v1/agents/{agent}/stats", key)["total_requests"] >= requests, 60, "requests")
    _wait_for(lambda: _get(stack, f"/v1/agents/{agent}/usage?period=day", key)["lines"], 60, "usage")
    dom = render(f"{stack.gateway}/dashboard/{agent}?range=7d#token={key}")  # the overview tab
    assert dom.body.get("data-state") == "ready", dom.attrs.get("status")
    assert dom.text["ov-all-total_requests"] == f"{requests:,}" and dom.attrs["ov-requests"]["data-value"] == str(
        requests)
    assert dom.attrs["chart-overview"]["data-rendered"] == "1"
    billing = render(f"{stack.gateway}/dashboard/{agent}?tab=usage#token={key}")  # this month's statement
    assert billing.body.get("data-state") == "ready", billing.attrs.get("status")
    lines = billing.tables["table-billing-lines"][1:]  # customer, meter, model, unit, reports, quantity, price...
    assert [row[:6] for row in lines] == [usage_row], lines


def test_demo_sends_realistic_traffic(stack: Stack) -> None:
    before = _get(stack, f"/v1/agents/{AGENT}/stats")["total_requests"]
    done = subprocess.run([sys.executable, "-m", "meterline_cli", "demo", "--requests", "60", "--seed", "7"],
                          env=stack.env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{stack.gateway}/dashboard/{AGENT}" in done.stdout
    summary = re.search(r"(\d+) ok, (\d+) errors, (\d+) payment required \((\d+) paid", done.stdout)
    assert summary, done.stdout
    ok, errors, required, paid = map(int, summary.groups())
    assert ok + errors == 60 and required == paid > 0
    # every request the sample agent served is logged, plus the 402 answers before each payment
    want = before + 60 + required
    stats = _wait_for(lambda: (s := _get(stack, f"/v1/agents/{AGENT}/stats"))["total_requests"] >= want and s,
                      60, "the demo traffic in the read API")
    assert stats["total_requests"] == want
    assert stats["payment_required"] >= required and stats["revenue"] > 0
