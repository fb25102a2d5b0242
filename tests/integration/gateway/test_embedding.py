"""Embedding contract: the gateway app served by faust.contrib.asgi.serve_asgi inside a Faust worker.

serve_asgi runs uvicorn with ``lifespan="on"``, so ``create_app``'s lifespan starts the runtime
(producer, key registry) on the worker's loop. Run as a subprocess: a Faust worker owns the
process (signals, exit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

SCRIPT = '''
import json, os, sys, threading, time, uuid
import faust, httpx
from faust.contrib.asgi import serve_asgi
from faust.worker import Worker
from gateway.main import create_app
from gateway.settings import GatewaySettings
from meterline.local.ports import free_port

boot, out = os.environ["KAFKA_BOOTSTRAP_SERVERS"], sys.argv[1]
port = free_port()
app = faust.App("embed-" + uuid.uuid4().hex[:6], broker="kafka://" + boot, store="memory://",
                topic_partitions=1, broker_session_timeout=10)
topic = app.topic("embed-" + uuid.uuid4().hex[:6], partitions=1)

@app.agent(topic)
async def noop(stream):
    async for _ in stream:
        pass

gateway = create_app(GatewaySettings(kafka_bootstrap_servers=boot, topic_prefix="e" + uuid.uuid4().hex[:6] + ".",
                                     partitions=1))
serve_asgi(app, gateway, port=port)

def probe():
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            r = httpx.get("http://127.0.0.1:%d/readyz" % port, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.3)
            continue
        with open(out, "w") as f:
            json.dump({"status": r.status_code, "body": r.json(), "started": gateway.state.runtime.started}, f)
        os._exit(0)
    os._exit(3)

threading.Thread(target=probe, daemon=True).start()
Worker(app, loglevel="warning").execute_from_commandline()
'''


def test_gateway_runs_inside_a_faust_worker(kafka_bootstrap: str, tmp_dir: Path) -> None:
    script, result = tmp_dir / "embed.py", tmp_dir / f"result-{uuid.uuid4().hex[:6]}.json"
    script.write_text(SCRIPT)
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, str(script), str(result)], cwd=tmp_dir, env=env, capture_output=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    data = json.loads(result.read_text())
    assert data == {"status": 200, "body": {"status": "ready", "kafka": True, "keys": True}, "started": True}
