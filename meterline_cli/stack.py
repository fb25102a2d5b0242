"""``meterline up``: the whole local stack in one command.

Starts (unless the environment names running ones) a real Apache Kafka and Mosquitto, creates the
topics, applies the ClickHouse migrations, makes sure the first agent has an API key, then runs two
processes. This one is the stream worker (Faust) and also serves the gateway app — MQTT bridge, read
API and dashboard — on the worker's loop (``faust.contrib.asgi.serve_asgi``): one owner of the
embedded ClickHouse engine. The ingest front (``gateway/front.py``, started by ``meterline_cli/front.py``)
takes the gateway port, serves HTTP and OTLP ingest on a core of its own and forwards every other
request here, to an internal loopback port (``METERLINE_FRONT=0``: no front, this process serves all).
Ctrl-C stops the front, the worker, then Kafka and Mosquitto. A second run reuses ``METERLINE_HOME``
and keeps the data of the first.

Kafka and Mosquitto die with this process (``meterline.local.processes``), a supervisor restarts
them if they crash (``meterline.local.supervisor``), and a stop always ends within
``STOP_DEADLINE_S`` (``meterline.local.shutdown``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from gateway.keys.legacy import ensure_local_key_secret
from meterline.clickhouse import get_client
from meterline.errors import ConfigError
from meterline.kafka_admin import create_topics
from meterline.local.logrepeats import RepeatLimiter
from meterline.local.mosquitto import MqttLogin
from meterline.local.ports import free_port
from meterline.local.secret_file import ensure_secret, new_operator_token, operator_token_path
from meterline.local.shutdown import BoundedStop
from meterline.local.supervisor import Supervisor
from meterline.migrations import apply_migrations
from meterline.paths import data_home
from meterline.settings import StackSettings
from meterline_cli.front import FrontProcess
from meterline_cli.infra import LocalInfra

DEFAULT_AGENT = "demo-agent"
#: Partitions of the data topics a new local stack creates, unless METERLINE_PARTITIONS says otherwise.
#: One process consumes them all and one thread inserts them into the embedded engine, so more
#: partitions buy no parallelism here, only more inserts: every insert costs ~0.1 s of CPU whatever its
#: size (the rollup views and projections run per insert), i.e. 0.6 s of CPU a second with 6 partitions
#: closing a batch each second (docs/capacity.md, "Where the time goes"). Existing topics keep theirs.
LOCAL_PARTITIONS = 1


def register(sub: Any) -> None:
    p = sub.add_parser("up", help="run the local stack: Kafka, Mosquitto, gateway + bridge + worker + dashboards")
    p.add_argument("--agent", default=DEFAULT_AGENT, help=f"agent given a first API key (default {DEFAULT_AGENT})")
    p.set_defaults(func=cmd_up)


def _mqtt_users() -> dict[str, str]:
    """METERLINE_MQTT_USERS="user:pass,user2:pass2" — extra tenant logins of the local Mosquitto."""
    users: dict[str, str] = {}
    for item in filter(None, os.environ.get("METERLINE_MQTT_USERS", "").split(",")):
        name, _, password = item.partition(":")
        users[name.strip()] = password
    return users


def stack_environment(settings: StackSettings, infra: LocalInfra) -> dict[str, str]:
    """The variables that point gateway and worker settings at this stack's services."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "CLICKHOUSE_URL": settings.effective_clickhouse_url(),
    }
    if infra.mosquitto is not None:
        ep = infra.mosquitto.endpoint
        env["MQTT_URL"] = f"mqtt://{quote(ep.username)}:{quote(ep.password)}@{ep.host}:{ep.port}"
        env["MQTT_CA_FILE"] = str(ep.ca_file)
    # The local stack is one person's on one machine: the receivers of its alert webhooks run on this host
    # too (a service's network worth guarding is compose's, where the default stays off).
    if "METERLINE_ALERTS_ALLOW_PRIVATE_URLS" not in os.environ:
        env["METERLINE_ALERTS_ALLOW_PRIVATE_URLS"] = "1"
    return env


async def ensure_first_key(bootstrap: str, topic: str, agent_id: str) -> str | None:
    """Create a key for ``agent_id`` unless it has an active one; return the new raw key, if any."""
    from gateway.keys.admin import create_key, list_keys

    existing = [r for r in await list_keys(bootstrap, topic) if r.agent_id == agent_id and r.status == "active"]
    if existing:
        return None
    raw, _ = await create_key(bootstrap, topic, agent_id, name="first key (meterline up)")
    return raw


def local_operator_token() -> tuple[str, Path] | None:
    """The operator token of the local stack and its file; None when ``METERLINE_OPERATOR_TOKEN`` gives one.

    Without the variable, the token is the one in ``$METERLINE_HOME/operator-token``, made (0600) on
    the first run. The ``meterline`` commands of a second terminal read the same file, so the local
    stack's read API works without anyone copying the token around.
    """
    if os.environ.get("METERLINE_OPERATOR_TOKEN"):
        return None
    path = operator_token_path()
    token, _ = ensure_secret(path, new_operator_token)
    return token, path


def local_mqtt_login(infra: LocalInfra, agent: str) -> MqttLogin | None:
    """The agent's tenant login on the local broker (made once; its password file in the broker's home)."""
    if infra.mosquitto is None:
        return None
    try:
        return infra.mosquitto.tenant_login(agent, agent)
    except ConfigError as exc:  # an agent id that is no valid login name: the stack runs without one
        logging.getLogger(__name__).warning("no MQTT login for agent %s: %s", agent, exc)
        return None


def _banner(settings: StackSettings, infra: LocalInfra, agent: str, key: str | None,
            operator_file: Path | None, mqtt_login: MqttLogin | None = None) -> str:
    port = settings.meterline_gateway_port
    base = f"http://127.0.0.1:{port}"
    lines = [
        "",
        "Meterline is up.",
        f"  ingest      {base}/v1/ingest        (GT8004_INGEST_URL)",
        f"  OTLP        {base}/v1/traces        (OTEL_EXPORTER_OTLP_ENDPOINT={base}, docs/otlp.md)",
        f"  dashboard   {base}/dashboard/{agent}",
        f"  read API    {base}/v1/agents/{agent}/stats     API docs {base}/docs",
        f"  health      {base}/healthz  {base}/readyz  metrics {base}/metrics",
        f"  Kafka       {infra.bootstrap_servers}",
    ]
    if infra.mosquitto is not None:
        ep = infra.mosquitto.endpoint
        lines.append(f"  MQTT        mqtts://{ep.host}:{ep.tls_port} for billing clients (CA {ep.ca_file}); "
                     f"mqtt://{ep.host}:{ep.port} for Meterline's services")
        if mqtt_login is not None:  # the password's file, not the password (banners end up in logs)
            lines.append(f"  MQTT login  user {mqtt_login.username}, password in {mqtt_login.password_file} "
                         f"(BILLING_MQTT_USERNAME/_PASSWORD/_CA_FILE; `meterline mqtt-login create` makes more)")
    lines.append(f"  ClickHouse  {settings.effective_clickhouse_url()}")
    if operator_file is None:
        lines.append("  operator    token from METERLINE_OPERATOR_TOKEN (reads every agent, runs `meterline sql`)")
    else:  # the path, not the token: banners end up in scrollback, CI logs and screen shares
        lines.append(f"  operator    token in {operator_file} (meterline sql/dashboard/export find it; "
                     f"for the web page: cat {operator_file})")
    if key:
        lines.append(f"  API key for agent {agent} (shown once, store it now): {key}")
        lines.append(f"  terminal    METERLINE_TOKEN={key} meterline dashboard --agent {agent}")
    else:
        lines.append(f"  agent {agent} already has an API key; `meterline keys create --agent {agent}` makes another")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


#: From Ctrl-C/SIGTERM to the end of the process, whatever state Kafka, Mosquitto or ClickHouse are in.
STOP_DEADLINE_S = 15.0


def run_embedded(banner: str, stop: BoundedStop, operator_token: str | None = None, *,
                 port: int | None = None, front: FrontProcess | None = None) -> int:
    """Run worker + gateway in this process until SIGINT/SIGTERM (``stop`` bounds the shutdown).

    ``operator_token``: the read API's operator token, unless ``METERLINE_OPERATOR_TOKEN`` gives it.
    ``port``: where this process serves (default the gateway port); ``front``: the ingest front in
    front of it, which must serve too before the banner is printed.
    """
    import faust
    from faust.contrib.asgi import serve_asgi
    from prometheus_client import REGISTRY

    from gateway.main import create_app as create_gateway
    from gateway.runtime import GatewayRuntime
    from gateway.settings import GatewaySettings
    from stream_workers.app import create_app as create_worker
    from stream_workers.settings import WorkerSettings

    # Faust and the gateway's Kafka clients must share one loop: make it the current loop first.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stack = StackSettings()
    port = port or stack.meterline_gateway_port
    worker_settings = WorkerSettings()
    gateway_settings = GatewaySettings(bridge=bool(os.environ.get("MQTT_URL")), host="127.0.0.1", port=port,
                                       clickhouse_url=worker_settings.effective_clickhouse_url())
    if operator_token:
        gateway_settings = gateway_settings.model_copy(update={"operator_token": SecretStr(operator_token)})
    worker_app = create_worker(worker_settings)
    async def build_gateway() -> Any:  # aiokafka clients must be created with the loop running
        runtime = GatewayRuntime(gateway_settings)
        runtime.metrics.include(REGISTRY)  # the worker's series (lag, dedupe, sink) on the same /metrics
        return create_gateway(gateway_settings, runtime=runtime)

    gateway_app = loop.run_until_complete(build_gateway())
    serve_asgi(worker_app, gateway_app, host="127.0.0.1", port=port, log_level="warning")
    ports = [port] if front is None else [port, front.port]

    @worker_app.task  # type: ignore[untyped-decorator]  # faust is untyped
    async def announce() -> None:
        deadline = asyncio.get_running_loop().time() + 120
        waiting = list(ports)
        while waiting and asyncio.get_running_loop().time() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", waiting[0])
                writer.close()
                waiting.pop(0)
            except OSError:
                await asyncio.sleep(0.2)
        if waiting:
            print("meterline: the gateway did not start listening within 120 s", file=sys.stderr, flush=True)
        else:
            print(banner, flush=True)

    class StackWorker(faust.Worker):
        """Faust's worker, whose signal handlers also start the bounded stop."""

        def _on_sigint(self) -> None:
            stop.request("Ctrl-C")
            super()._on_sigint()

        def _on_sigterm(self) -> None:
            stop.request("SIGTERM")
            super()._on_sigterm()

    # Our logging configuration stays (mode's would reset it), and no progress spinner: its cursor
    # escape codes and "starting➢" end up in logs and captured output. Once running, the stack
    # reports warnings and errors only (all of it with -v).
    root = logging.getLogger()
    if root.getEffectiveLevel() > logging.DEBUG:
        root.setLevel(logging.WARNING)
        for handler in root.handlers:  # an unreachable Kafka: each client error once per 10 s
            handler.addFilter(RepeatLimiter())
    worker = StackWorker(worker_app, quiet=True, redirect_stdouts=False, override_logging=False, loop=loop)
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    os.environ.setdefault("METERLINE_PARTITIONS", str(LOCAL_PARTITIONS))  # read by every settings object below
    settings = StackSettings()
    stop = BoundedStop(STOP_DEADLINE_S)
    stop.install_signal_handlers()
    infra = LocalInfra(settings, extra_mqtt_users=_mqtt_users())
    supervisor: Supervisor | None = None
    front: FrontProcess | None = None
    try:
        infra.start()
        # giving up on a child stops the stack the way SIGTERM does (bounded, non-zero exit)
        supervisor = infra.supervise(on_give_up=lambda _: os.kill(os.getpid(), signal.SIGTERM))
        stop.on_request.append(lambda: supervisor.stop(0) if supervisor else None)
        os.environ.update(stack_environment(settings, infra))
        topics = settings.topics
        asyncio.run(create_topics(infra.bootstrap_servers, topics))
        client = get_client(settings.effective_clickhouse_url())
        apply_migrations(client)
        key = asyncio.run(ensure_first_key(infra.bootstrap_servers, topics.keys, args.agent))
        ensure_local_key_secret()  # legacy MQTT keys: the bridge and `meterline keys` read it from the home
        mqtt_login = local_mqtt_login(infra, args.agent)
        operator = local_operator_token()
        banner = _banner(settings, infra, args.agent, key, operator[1] if operator else None, mqtt_login)
        port = None
        if settings.meterline_front:
            port = free_port()
            front = FrontProcess(data_home(), "127.0.0.1", settings.meterline_gateway_port,
                                 f"http://127.0.0.1:{port}").launch()
            supervisor.add("Ingest front", front)
            stop.on_request.append(front.request_stop)
        code = run_embedded(banner, stop, operator[0] if operator else None, port=port, front=front)
    except KeyboardInterrupt:
        code = 130
    finally:
        stop.arm()
        stop.install_signal_handlers()  # the worker's loop restored the default handlers on close
        if supervisor is not None:
            supervisor.stop()
        if front is not None:  # its last ingest calls reach Kafka before Kafka stops
            front.stop()
        infra.stop()
    return 1 if supervisor is not None and supervisor.gave_up else code
