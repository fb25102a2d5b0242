"""The billing seed README's ```python blocks, extracted at test time, run unchanged on the real broker.

The examples hard-code ``"localhost", 8883`` and placeholder credentials. They are not edited: the broker
is supplied the documented way, through ``BILLING_MQTT_PORT`` / ``_USERNAME`` / ``_PASSWORD`` (which override
constructor arguments) and OpenSSL's ``SSL_CERT_FILE`` for the local CA (the default verifying TLS path).
The billing server is played by ``BillingPeer``, which announces the examples' key ``your-api-key``.

- The complete example (it has ``if __name__ == "__main__"``) runs as a script in a subprocess.
- The two signature blocks (``async def report_usage(...) -> None`` without a body) are checked against
  the real signatures.
- Every other block is a fragment of one README session: it runs in-process with top-level ``await``, in a
  namespace holding the package's public names and ``client`` (the singleton, as the README's first
  sections create it). Services a block defines are then called the way the complete example calls
  them (a gRPC-style stream with ``metadata = [('api-key', 'your-api-key')]``), and every report they
  make must reach the server.

Without the seed documents (a plain clone) the seed tests are skipped, or fail under
``METERLINE_REQUIRE_SEEDS=1`` (``tests/seeds.py``); the check of our own ``sdk/README.md`` example runs anyway.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import billing_sdk
import pytest
from billing_sdk import BillingClient, get_billing_client

from meterline.local.mosquitto import MqttEndpoint
from tests.seeds import needs_seed, seed

from .peer import BillingPeer

SEED = "billing-sdk.zh.md"
seeded = needs_seed(SEED)  # skipped, with the reason, in a clone without the seed documents
KEY = "your-api-key"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", seed(SEED).read_text(encoding="utf-8"), flags=re.DOTALL)


def _kind(block: str) -> str:
    if 'if __name__ == "__main__"' in block:
        return "script"
    try:
        ast.parse(block)
    except SyntaxError:
        if block.lstrip().startswith("async def"):
            return "signature"
        raise
    return "fragment"


@seeded
def test_the_seed_has_the_blocks_we_run() -> None:
    kinds = [_kind(b) for b in _blocks()]
    assert (kinds.count("script"), kinds.count("signature"), kinds.count("fragment")) == (1, 2, 9)


@seeded
def test_signature_blocks_match_the_api() -> None:
    signatures = [b for b in _blocks() if _kind(b) == "signature"]
    ours = {"report_usage": inspect.signature(billing_sdk.report_usage),
            "report_usage(self": inspect.signature(BillingClient.report_usage)}
    for block in signatures:
        namespace: dict[str, Any] = {}
        exec(compile("from __future__ import annotations\n" + block.rstrip() + ": ...\n", "<seed>", "exec"),  # noqa: S102
             namespace)
        name = "report_usage(self" if "(self" in block else "report_usage"
        assert str(inspect.signature(namespace["report_usage"])) == str(ours[name])


@pytest.fixture
def seed_env(mosquitto: MqttEndpoint, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"BILLING_MQTT_PORT": str(mosquitto.tls_port), "BILLING_MQTT_USERNAME": mosquitto.username,
           "BILLING_MQTT_PASSWORD": mosquitto.password, "SSL_CERT_FILE": str(mosquitto.ca_file)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@seeded
async def test_complete_example_script(mqtt_server: MqttEndpoint,
        mosquitto: MqttEndpoint, seed_env: dict[str, str], tmp_path: Path) -> None:
    (script,) = [b for b in _blocks() if _kind(b) == "script"]
    path = tmp_path / "complete_example.py"
    path.write_text(script, encoding="utf-8")
    peer = await BillingPeer(mqtt_server, {KEY: "ok"}, full=True).start()
    try:
        proc = await asyncio.to_thread(subprocess.run, [sys.executable, str(path)], capture_output=True, text=True,
                                       timeout=60, env={**os.environ, **seed_env}, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "{'content': 'Hello from AI', 'token_count': 100}" in proc.stdout
        await peer.wait_until(lambda: len(peer.reports) >= 1)
        (report,) = peer.reports
        assert (report["api_key"], report["module"], report["model"], report["usage"]) == (
            KEY, "llm", "gpt-3.5-turbo", 100)
        assert report["metadata"] == {"prompt_length": len(str(["Hello"]))} and report["report_id"]
    finally:
        await peer.stop()


class MockStream:  # the complete example's stream, for calling the services the fragments define
    metadata = [("api-key", KEY)]


async def _run(block: str, namespace: dict[str, Any]) -> None:
    code = compile(block, "<seed block>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # noqa: S307 - the seed's own example code
    if inspect.iscoroutine(result):
        await result


async def _call_services(before: set[str], namespace: dict[str, Any]) -> list[str]:
    """Call every @require_api_key method of the classes a block defined; returns the errors raised."""
    errors = []
    for name, obj in list(namespace.items()):
        if name in before or not isinstance(obj, type):
            continue
        for attr, method in vars(obj).items():
            if hasattr(method, "__wrapped__"):
                try:
                    await getattr(obj(), attr)(MockStream(), "hello")
                except NameError as exc:  # RobustService calls process_data, which the README never defines
                    errors.append(f"{name}.{attr}: {exc}")
    return errors


@seeded
async def test_readme_fragments(mqtt_server: MqttEndpoint, mosquitto: MqttEndpoint, seed_env: dict[str, str]) -> None:
    fragments = [b for b in _blocks() if _kind(b) == "fragment"]
    (init,) = [b for b in fragments if 'username="your_username"' in b]
    peer = await BillingPeer(mqtt_server, {KEY: "ok"}, full=True).start()
    try:
        base = {name: getattr(billing_sdk, name) for name in billing_sdk.__all__}
        await _run(init, {**base})
        base["client"] = get_billing_client()
        assert base["client"] is not None
        errors: list[str] = []
        for block in fragments:
            namespace = {**base, "__name__": "seed_fragment"}
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                await _run(block, namespace)
            assert {str(w.message) for w in caught} == (  # `from ... import` may look the name up twice
                {"billing_sdk.report_usage_usage is a misspelling of report_usage"}
                if "report_usage_usage" in block else set())
            errors += await _call_services(set(base) | {"__builtins__", "__name__"}, namespace)
            if "RobustService" in namespace:  # and its success path, once process_data exists
                namespace["process_data"] = lambda data: {"processed": data}
                await namespace["RobustService"]().safe_operation(MockStream(), "hello")
        assert errors == ["RobustService.safe_operation: name 'process_data' is not defined"]
        expected = sorted([
            ("llm", "my-model", 100), ("llm", "gpt-3.5-turbo", 100), ("llm", "gpt-4", 150), ("llm", "gpt-4", 150),
            ("llm", "gpt-4", 25), ("tts", "eleven-labs", 5), ("asr", "whisper", 30),
            ("processing", "data-processor", 1), ("processing", "data-processor", len(str({"processed": "hello"}))),
        ])
        client = get_billing_client()
        assert client is not None and client.is_connected()
        assert await client.flush(10)
        await peer.wait_until(lambda: len(peer.reports) >= len(expected))
        assert sorted((r["module"], r["model"], r["usage"]) for r in peer.reports) == expected
        assert {r["api_key"] for r in peer.reports} == {KEY}
        failed = [r for r in peer.reports if r["usage"] == 1]
        assert failed[0]["metadata"] == {"status": "error", "error": "name 'process_data' is not defined"}
    finally:
        await peer.stop()


async def test_sdk_readme_billing_example(mqtt_server: MqttEndpoint, mosquitto: MqttEndpoint, seed_env: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Our own README's billing example runs too (its host comes from BILLING_MQTT_HOST)."""
    readme = (Path(__file__).resolve().parents[3] / "sdk" / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## billing_sdk"):]
    block = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None
    monkeypatch.setenv("BILLING_MQTT_HOST", "localhost")
    peer = await BillingPeer(mqtt_server, {KEY: "ok"}).start()
    try:
        namespace: dict[str, Any] = {"key": KEY, "__name__": "readme"}
        await _run(block.group(1), namespace)
        await peer.wait_until(lambda: len(peer.reports) >= 2)
        assert sorted((r["module"], r["usage"]) for r in peer.reports) == [("llm", 150), ("tts", 42)]
        assert not namespace["client"].is_connected()  # the example ends with disconnect()
    finally:
        await peer.stop()
