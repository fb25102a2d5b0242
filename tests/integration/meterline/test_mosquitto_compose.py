"""Compose's broker, run for real without Docker: deploy/mosquitto/init.sh, mosquitto.conf, then
`meterline mqtt-login setup` and `create` as the init service and an operator run them.

The container paths (/mosquitto/..., /deploy) and ports are rewritten to a temporary directory and free
ports; the plugin path to Debian's. The same refusals as on the local broker must hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import re
import shutil
import ssl
import subprocess
import uuid
from pathlib import Path

from gmqtt import Client, Subscription
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError
from pydantic import SecretStr

from gateway.keys import mqtt_logins
from gateway.settings import GatewaySettings
from meterline.local.mosquitto import dynsec_plugin
from meterline.local.ports import free_port, wait_for_port
from schemas.mqtt import KEYS_STATUS, REPORT
from tests.waiting import eventually, subscribed

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "mosquitto"


def render(tmp: Path, ports: dict[int, int]) -> Path:
    """init.sh run on this machine, and the broker config pointing at what it made."""
    def paths(text: str) -> str:
        return (text.replace("/mosquitto/secrets", f"{tmp}/secrets").replace("/mosquitto/data", f"{tmp}/data")
                .replace("/deploy/", f"{tmp}/deploy/"))

    (tmp / "deploy").mkdir()
    init = tmp / "init.sh"
    init.write_text(paths((DEPLOY / "init.sh").read_text()))
    shell = shutil.which("bash") or "sh"  # busybox's ash in the image; bash knows set -o pipefail too
    done = subprocess.run([shell, str(init)], env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                                                   "MQTT_ADMIN_PASSWORD": "admin-secret-for-the-test",
                                                   "MQTT_TLS_HOSTS": "localhost"},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    conf = paths((DEPLOY / "mosquitto.conf").read_text())
    conf = conf.replace("/usr/lib/mosquitto_dynamic_security.so", dynsec_plugin())
    conf = re.sub(r"^log_dest stdout$", f"log_dest file {tmp}/mosquitto.log", conf, flags=re.M)
    for port, local in ports.items():
        conf = re.sub(rf"^listener {port}\b.*$", f"listener {local} 127.0.0.1", conf, flags=re.M)
    path = tmp / "mosquitto.conf"
    path.write_text(f"user {getpass.getuser()}\n" + conf)  # init.sh hands the files to uid 1883
    return path


async def test_the_compose_broker_applies_the_same_rules(tmp_dir: Path) -> None:
    ports = {1883: free_port(), 8884: free_port(), 8883: free_port()}
    conf = render(tmp_dir, ports)
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for port in ports.values():
            await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 10, "compose's Mosquitto")
        services, tenants = ports[8884], ports[8883]
        settings = GatewaySettings(
            mqtt_url=f"mqtts://meterline-bridge:bridge-secret@localhost:{services}",
            mqtt_admin_url=SecretStr(f"mqtts://meterline-admin:admin-secret-for-the-test@localhost:{services}"),
            mqtt_ca_file=str(tmp_dir / "secrets" / "ca.crt"))
        assert await mqtt_logins.setup(settings) == "meterline-bridge"
        assert await mqtt_logins.setup(settings) == "meterline-bridge"  # idempotent: init runs at every start
        login, password = await mqtt_logins.create(settings, "acme")
        assert [c["username"] for c in await mqtt_logins.listing(settings)] == ["acme"]
        context = ssl.create_default_context(cafile=str(tmp_dir / "secrets" / "ca.crt"))

        async def connect(user: str, secret: str, port: int, client_id: str, version: int = MQTTv311) -> Client:
            client = Client(client_id)
            client.set_auth_credentials(user, secret)
            await client.connect("localhost", port, ssl=context, version=version)
            return client

        received: list[bytes] = []
        bridge = await connect("meterline-bridge", "bridge-secret", services, "meterline-bridge-1", MQTTv50)
        bridge.on_message = lambda _c, _t, payload, _q, _p: received.append(payload) or 0
        await subscribed(bridge, f"$share/meterline/{REPORT}")
        tenant = await connect(login, password, tenants, f"x-{uuid.uuid4().hex[:6]}")
        granted: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
        tenant.on_subscribe = lambda _c, _m, qos, _p: granted.done() or granted.set_result(tuple(qos))
        tenant.subscribe([Subscription(t, qos=1) for t in (f"$share/meterline/{REPORT}", "#", "$SYS/#", KEYS_STATUS)])
        assert (await asyncio.wait_for(granted, 10))[:3] == (0x80, 0x80, 0x80)
        tenant.publish(REPORT, b'{"usage": 1}', qos=1)
        await eventually(lambda: received == [b'{"usage": 1}'], 10, "the report at the bridge's login")
        try:  # the services' listener: the tenant's login is bound to its own client id
            await connect(login, password, services, "meterline-bridge-1")
            raise AssertionError("a tenant connected with the bridge's client id")
        except MQTTConnectError:
            pass
        assert bridge.is_connected

        def admin_topics() -> set[str]:
            roles = json.loads((tmp_dir / "data" / "dynamic-security.json").read_text())["roles"]
            return {a["topic"] for r in roles if r["rolename"] == "admin" for a in r["acls"]}

        # mosquitto_ctrl's admin could read every topic; setup narrowed it to the plugin and $SYS
        assert await eventually(lambda: "#" not in admin_topics() and admin_topics(), 10, "the admin role narrowed")
        for client in (tenant, bridge):
            with contextlib.suppress(ssl.SSLError):
                await client.disconnect()
    finally:
        broker.terminate()
        broker.wait(10)
