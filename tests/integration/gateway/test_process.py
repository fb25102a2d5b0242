"""``python -m gateway`` as operators run it: JSON logs without secrets, SIGTERM shuts down cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.keys.admin import create_key
from meterline.local.ports import free_port
from schemas.topics import Topics
from tests.integration.gateway.conftest import entry

ROOT = Path(__file__).resolve().parents[3]


async def test_gateway_process_json_logs_and_sigterm(kafka_bootstrap: str, topics: Topics, tmp_dir: Path) -> None:
    key, _ = await create_key(kafka_bootstrap, topics.keys, "agent-p")
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "METERLINE_TOPIC_PREFIX": topics.prefix,
           "METERLINE_GATEWAY_PORT": str(port), "METERLINE_LOG_FORMAT": "json",
           "METERLINE_OPERATOR_TOKEN": "op-token-never-logged",
           # with ClickHouse configured the process also serves the read API and dashboard page
           "CLICKHOUSE_URL": f"chdb://{tmp_dir / 'chdb'}?database=gw_process"}
    migrated = subprocess.run([sys.executable, "-m", "meterline_cli", "migrate"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    proc = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "gateway did not become ready"
                time.sleep(0.2)
            ok = await http.post("/v1/ingest", json={"entries": [entry(1)]}, headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 202
            wrong = key[:-1] + ("1" if key.endswith("0") else "0")  # another key (1 key in 16 ends in 0)
            bad = await http.post("/v1/ingest", json={"entries": [entry(2)]},
                                  headers={"Authorization": f"Bearer {wrong}"})
            assert bad.status_code in (401, 403)
            assert (await http.get("/dashboard/agent-p")).status_code == 200
            stats = await http.get("/v1/agents/agent-p/stats", headers={"Authorization": f"Bearer {key}"})
            assert stats.status_code == 200 and stats.json()["total_requests"] == 0, stats.text
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # uvicorn re-raises the signal it handled once shutdown is complete, so -SIGTERM is a clean exit here
    assert proc.returncode in (0, -signal.SIGTERM), output.decode(errors="replace")[-2000:]
    lines = [json.loads(line) for line in output.decode().splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    messages = [line["msg"] for line in lines]
    assert "gateway runtime stopped" in messages and "Application shutdown complete." in messages
    assert key.encode() not in output and key[:-1].encode() not in output
    assert b"op-token-never-logged" not in output
