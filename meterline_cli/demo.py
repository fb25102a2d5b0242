"""``meterline demo``: a sample agent sends realistic traffic through a running local stack.

The sample agent is a FastAPI app with the SDK's ``GT8004Middleware`` (served by a real uvicorn on
a free port) and a ``billing_sdk.BillingClient`` reporting LLM/TTS usage over MQTT/TLS. A load
loop calls it as several customers would: chat and search tools, an MCP ``tools/call`` endpoint,
paid endpoints answering 402 until an x402 payment header comes along, and a few failures.
Its API key is made on the first run (``meterline keys``) and kept, 0600, in ``$METERLINE_HOME/demo/``,
so later runs report as the same key instead of adding one more. The SDKs' own INFO lines stay out of
the way unless ``meterline -v demo``. It ends by printing where to look.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response

from meterline.errors import ConfigError
from meterline.local.mosquitto import LocalMosquitto
from meterline.local.ports import free_port
from meterline.local.secret_file import read_secret, write_secret
from meterline.paths import data_home
from meterline.settings import StackSettings

CUSTOMERS = [f"customer-{name}" for name in ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne")]
TOOLS = ["chat_completion", "web_search", "summarize", "translate", "image_caption"]
MODELS = [("llm", "gpt-4", 0.25), ("llm", "gpt-4o", 0.35), ("llm", "gpt-3.5-turbo", 0.25), ("tts", "eleven-labs", 0.1),
          ("asr", "whisper", 0.05)]


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="send realistic sample traffic (SDK middleware + billing) through `meterline up`")
    p.add_argument("--requests", type=int, default=400, help="requests to make (default 400)")
    p.add_argument("--agent", default="demo-agent", help="agent id the sample app reports as")
    p.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    p.set_defaults(func=cmd_demo)


def sample_agent(logger: Any, billing: Any, api_key: str) -> Any:
    """The sample FastAPI agent: one line of middleware, usage reported per call."""
    from gt8004.middleware.fastapi import GT8004Middleware

    app = FastAPI(title="Meterline demo agent")
    app.add_middleware(GT8004Middleware, logger=logger)

    async def bill(module: str, model: str, units: int, **meta: Any) -> None:
        try:
            await billing.report_usage_data(api_key, module, model, units, meta)
        except Exception as exc:  # noqa: BLE001 - the demo keeps going; the count shows in the summary
            print(f"\nusage report failed: {exc}", file=sys.stderr)

    @app.post("/tools/{tool}")
    async def call_tool(tool: str, request: Request, response: Response) -> dict[str, Any]:
        body = await request.json()
        await asyncio.sleep(random.uniform(0.002, 0.03))  # noqa: S311 - demo latency
        if body.get("fail"):
            response.status_code = 500
            return {"error": "upstream model timeout"}
        module, model, _ = random.choice(MODELS)  # noqa: S311
        units = random.randint(20, 1500) if module == "llm" else random.randint(5, 300)  # noqa: S311
        # the end customer the usage is billed to (statements are per end customer): the caller's
        await bill(module, model, units, tool=tool, customer_id=request.headers.get("x-customer-id"))
        return {"tool": tool, "model": model, "units": units}

    @app.post("/premium/{tool}")
    async def premium(tool: str, request: Request, response: Response) -> dict[str, Any]:
        if "x-payment" not in request.headers:
            response.status_code = 402
            return {"error": "payment required", "accepts": [{"network": "base-mainnet", "maxAmount": "50000"}]}
        response.headers["X-PAYMENT-RESPONSE"] = _b64({"transaction": "0x" + uuid.uuid4().hex * 2,
                                                        "network": "base-mainnet"})
        await bill("llm", "gpt-4", random.randint(200, 2000), tool=tool, paid=True,  # noqa: S311
                   customer_id=request.headers.get("x-customer-id"))
        return {"tool": tool, "paid": True}

    @app.post("/mcp")
    async def mcp(request: Request) -> dict[str, Any]:
        rpc = await request.json()
        await asyncio.sleep(random.uniform(0.001, 0.01))  # noqa: S311
        return {"jsonrpc": "2.0", "id": rpc.get("id"), "result": {"content": [{"type": "text", "text": "ok"}]}}

    return app


def _b64(obj: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def _payment(customer: str) -> str:
    amount = random.choice([10_000, 25_000, 50_000])  # noqa: S311 - atomic USDC units (0.01–0.05)
    return _b64({"x402Version": 1, "scheme": "exact", "network": "base-mainnet",
                 "payload": {"authorization": {"from": f"0x{abs(hash(customer)) % 16**40:040x}",
                                               "value": str(amount)}}})


def _bar(done: int, total: int, started: float) -> None:
    if not sys.stdout.isatty():  # a progress bar redrawn with \r is noise in a log or a pipe
        return
    width = 32
    filled = int(width * done / max(total, 1))
    rate = done / max(time.monotonic() - started, 1e-6)
    sys.stdout.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {rate:5.0f} req/s")
    sys.stdout.flush()


async def drive(base: str, total: int) -> dict[str, int]:
    import httpx

    counts = {"ok": 0, "error": 0, "payment_required": 0, "paid": 0}
    started = time.monotonic()
    sem = asyncio.Semaphore(8)
    done = 0

    async def one(http: httpx.AsyncClient, i: int) -> None:
        nonlocal done
        customer = random.choice(CUSTOMERS)  # noqa: S311
        headers = {"X-Customer-ID": customer, "User-Agent": "meterline-demo/1.0"}
        roll = random.random()  # noqa: S311
        async with sem:
            if roll < 0.15:
                body = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                        "params": {"name": random.choice(TOOLS), "arguments": {"q": "hello"}}}  # noqa: S311
                resp = await http.post("/mcp", json=body, headers=headers)
            elif roll < 0.30:
                tool = random.choice(TOOLS)  # noqa: S311
                resp = await http.post(f"/premium/{tool}", json={"q": "hello"}, headers=headers)
                if resp.status_code == 402:
                    counts["payment_required"] += 1
                    resp = await http.post(f"/premium/{tool}", json={"q": "hello"},
                                           headers={**headers, "X-PAYMENT": _payment(customer)})
                    counts["paid"] += resp.status_code == 200
            else:
                fail = random.random() < 0.05  # noqa: S311
                resp = await http.post(f"/tools/{random.choice(TOOLS)}", json={"q": "hi", "fail": fail},  # noqa: S311
                                       headers=headers)
        counts["ok" if resp.status_code < 400 else "error"] += 1
        done += 1
        if done == total or done * 100 // total != (done - 1) * 100 // total:
            _bar(done, total, started)

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        await asyncio.gather(*(one(http, i) for i in range(total)))
    sys.stdout.write("\n")
    return counts


class _Billing:
    """Thin adapter so the sample app reports usage through the SDK's public API."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.failed = 0

    async def report_usage_data(self, api_key: str, module: str, model: str, units: int, meta: dict[str, Any]) -> None:
        from billing_sdk import UsageData

        try:
            await self.client.report_usage(UsageData(api_key=api_key, module=module, model=model, usage=units,
                                                     metadata=meta))
        except Exception:
            self.failed += 1
            raise


async def run_demo(args: argparse.Namespace) -> int:
    import uvicorn
    from billing_sdk import BillingClient
    from gt8004 import GT8004Logger

    stack = StackSettings()
    bootstrap = stack.kafka_bootstrap_servers or f"127.0.0.1:{stack.meterline_kafka_port}"
    gateway = f"http://127.0.0.1:{stack.meterline_gateway_port}"
    key_file = demo_key_path(args.agent)
    api_key, created = await demo_key(bootstrap, stack.topics.keys, args.agent, key_file)
    await wait_until_known(gateway, args.agent, api_key)

    logger = GT8004Logger(agent_id=args.agent, api_key=api_key, ingest_url=f"{gateway}/v1/ingest",
                          batch_size=50, flush_interval=1.0)
    logger.transport.start_auto_flush()
    ca_file = os.environ.get("MQTT_CA_FILE") or str(data_home() / "mosquitto" / "certs" / "ca.crt")
    broker = LocalMosquitto(data_home() / "mosquitto", port=stack.meterline_mqtt_port,
                            tls_port=stack.meterline_mqtt_tls_port)  # the running stack's, not started here
    login = await asyncio.to_thread(broker.tenant_login, args.agent, args.agent)  # the agent's tenant login
    billing = BillingClient("127.0.0.1", stack.meterline_mqtt_tls_port, login.username, login.password,
                            ca_file=ca_file)
    await billing.connect()
    adapter = _Billing(billing)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(sample_agent(logger, adapter, api_key), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    print(f"Sample agent {args.agent} on http://127.0.0.1:{port}; sending {args.requests} requests")
    try:
        counts = await drive(f"http://127.0.0.1:{port}", args.requests)
    finally:
        server.should_exit = True
        await serving
        await logger.close()
        await billing.disconnect()
    sent = billing.stats()
    print(f"  {counts['ok']} ok, {counts['error']} errors, {counts['payment_required']} payment required "
          f"({counts['paid']} paid with x402); usage reports: {sent.acknowledged} acknowledged by the broker, "
          f"{sent.dropped + adapter.failed} not sent")
    key_line = (f"  API key    {api_key}   (new; kept in {key_file} for the next runs)" if created
                else f"  API key    the one in {key_file}   (cat {key_file})")
    print(f"\nLook at it:\n  dashboard  {gateway}/dashboard/{args.agent}   (paste the API key when asked)\n"
          f"{key_line}\n"
          f"  read API   curl -H \"Authorization: Bearer $(cat {key_file})\" {gateway}/v1/agents/{args.agent}/stats\n"
          f"  terminal   meterline dashboard --agent {args.agent}\n"
          f"  billing    MQTT login {login.username}, password in {login.password_file}")
    return 0


def demo_key_path(agent: str) -> Path:
    """Where the demo keeps the API key of ``agent`` (any agent id makes one file name)."""
    return data_home() / "demo" / f"{quote(agent, safe='')}.key"


async def demo_key(bootstrap: str, topic: str, agent: str, path: Path) -> tuple[str, bool]:
    """The demo's API key for ``agent``: the one kept in ``path`` while it is active, else a new one kept
    there; (key, made now)."""
    from gateway.keys.admin import create_key, list_keys
    from gateway.keys.format import hash_key

    kept = read_secret(path)
    if kept is not None:
        digest = hash_key(kept)
        if any(r.key_sha256 == digest and r.agent_id == agent and r.status == "active"
               for r in await list_keys(bootstrap, topic)):
            return kept, False
    raw, _ = await create_key(bootstrap, topic, agent, name="meterline demo")
    write_secret(path, raw)
    return raw, True


async def wait_until_known(gateway: str, agent: str, api_key: str, timeout: float = 30.0) -> None:
    """Return once the running gateway accepts ``api_key`` (it follows the key registry live)."""
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=gateway, timeout=5) as http:
        while True:
            try:
                status = (await http.get(f"/v1/agents/{quote(agent, safe='')}/stats",
                                         headers={"Authorization": f"Bearer {api_key}"})).status_code
            except httpx.HTTPError as exc:
                raise ConfigError(f"no gateway answers at {gateway} ({exc}): is `meterline up` running "
                                  "with the same METERLINE_GATEWAY_PORT?") from exc
            if status != 401:
                return
            if time.monotonic() > deadline:
                raise ConfigError(f"the gateway at {gateway} still refuses the demo's key after {timeout:.0f} s: "
                                  "does it read the same Kafka (METERLINE_KAFKA_PORT, METERLINE_TOPIC_PREFIX)?")
            await asyncio.sleep(0.1)  # the registry applies a new key within about a second


def cmd_demo(args: argparse.Namespace) -> int:
    if not args.verbose:  # the SDKs report their connections at INFO; -v shows them
        for name in ("billing_sdk", "gt8004"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.seed is not None:
        random.seed(args.seed)
    return asyncio.run(run_demo(args))
