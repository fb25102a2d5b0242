"""``meterline gateway``, ``meterline bridge``, ``meterline keys create|list|revoke`` and ``meterline mqtt-login``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from datetime import UTC, datetime
from typing import Any

from gateway.keys import mqtt_logins
from gateway.keys.admin import create_key, list_keys, revoke_key
from gateway.keys.legacy import KeyCipher, LegacyKeyError, key_secret_path
from gateway.settings import GatewaySettings
from meterline.settings import StackSettings


def register(sub: Any) -> None:
    p = sub.add_parser("gateway", help="serve the HTTP gateway (POST /v1/ingest, health, metrics)")
    p.add_argument("--host", help="listen address (default METERLINE_GATEWAY_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default METERLINE_GATEWAY_PORT or 9092)")
    p.add_argument("--bridge", action="store_true", help="also run the MQTT bridge in this process")
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser("bridge", help="run one MQTT billing bridge replica (MQTT_URL -> Kafka)")
    p.set_defaults(func=cmd_bridge)

    keys = sub.add_parser("keys", help="create, list and revoke API keys (stored hashed in Kafka)")
    ks = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    p = ks.add_parser("create", help="create a key for an agent; the key is printed once")
    p.add_argument("--agent", required=True, help="agent (or billing app) id that owns the key")
    p.add_argument("--name", help="a label for the key")
    p.add_argument("--prefix", default="ml_sk_", choices=["ml_sk_", "gt8004_sk_"], help="key prefix")
    p.add_argument("--legacy-mqtt", action="store_true",
                   help="for a billing client of the original MQTT protocol, which compares raw keys: the raw "
                        "key is kept encrypted (METERLINE_KEY_SECRET) and announced to legacy logins")
    p.set_defaults(func=cmd_keys_create)
    p = ks.add_parser("list", help="list keys (prefix, hash, agent, status) — never the keys themselves")
    p.add_argument("--json", action="store_true", help="JSON lines output")
    p.set_defaults(func=cmd_keys_list)
    p = ks.add_parser("revoke", help="revoke a key by display prefix (ml_sk_3f9a), hash or hash prefix")
    p.add_argument("ident")
    p.set_defaults(func=cmd_keys_revoke)

    logins = sub.add_parser("mqtt-login", help="create, list and delete tenant logins of the MQTT broker")
    ls = logins.add_subparsers(dest="login_command", required=True, metavar="ACTION")
    p = ls.add_parser("create", help="a login for an agent's billing client; the password is printed once")
    p.add_argument("--agent", required=True, help="agent (billing app) the login reports for")
    p.add_argument("--login", help="login name (default: the agent id); one login per connected process")
    p.add_argument("--legacy", action="store_true", help="may also read billing/keys/update (original protocol)")
    p.set_defaults(func=cmd_login_create)
    p = ls.add_parser("list", help="tenant logins and their agents")
    p.set_defaults(func=cmd_login_list)
    p = ls.add_parser("delete", help="delete a tenant login")
    p.add_argument("login")
    p.set_defaults(func=cmd_login_delete)
    p = ls.add_parser("setup", help="apply the broker's access rules and the bridge login of MQTT_URL (idempotent)")
    p.set_defaults(func=cmd_login_setup)


def _settings() -> GatewaySettings:
    settings = GatewaySettings()
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):  # the local stack's broker, on the port it was given
        port = StackSettings().meterline_kafka_port
        settings = settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{port}"})
    return settings


def cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.serve import serve

    settings = _settings()
    updates: dict[str, Any] = {}
    if args.host:
        updates["host"] = args.host
    if args.port:
        updates["port"] = args.port
    if args.bridge:
        updates["bridge"] = True
    serve(settings.model_copy(update=updates))
    return 0


def cmd_bridge(args: argparse.Namespace) -> int:
    from gateway.bridge.service import main

    return main()


def cmd_keys_create(args: argparse.Namespace) -> int:
    s = _settings()
    legacy: KeyCipher | None = None
    if args.legacy_mqtt:
        legacy = KeyCipher.load(s.key_secret.get_secret_value() if s.key_secret else None)
        if legacy is None:
            raise LegacyKeyError("--legacy-mqtt needs the server secret the bridge has: set METERLINE_KEY_SECRET "
                                 f"(or start the local stack, which keeps it in {key_secret_path()})")
    raw, record = asyncio.run(create_key(s.kafka_bootstrap_servers, s.topics.keys, args.agent, name=args.name,
                                         prefix=args.prefix, legacy=legacy))
    print(f"agent   {record.agent_id}")
    print(f"hash    {record.key_sha256}")
    print(f"key     {raw}")
    if legacy is not None:
        print("legacy  announced with its raw value on billing/keys/update to logins made with "
              f"`meterline mqtt-login create --agent {record.agent_id} --legacy`")
    print("Store the key now: it is not kept and cannot be shown again.")
    return 0


def cmd_login_create(args: argparse.Namespace) -> int:
    login, password = asyncio.run(mqtt_logins.create(_settings(), args.agent, args.login, legacy=args.legacy))
    print(f"agent     {args.agent}")
    print(f"login     {login}{'  (legacy: also reads billing/keys/update)' if args.legacy else ''}")
    print(f"password  {password}")
    print("Store the password now: the broker keeps only its hash. One login serves one connection at a time "
          "(the client id is the login): give each process of the agent a login of its own (--login).")
    return 0


def cmd_login_list(args: argparse.Namespace) -> int:
    for login in asyncio.run(mqtt_logins.listing(_settings())):
        roles = ",".join(r.get("rolename", "") for r in login.get("roles", []))
        print(f"{login.get('username', ''):<32} {login.get('textname', '') or '-':<40} {roles}")
    return 0


def cmd_login_setup(args: argparse.Namespace) -> int:
    bridge = asyncio.run(mqtt_logins.setup(_settings()))
    print(f"MQTT access rules applied; bridge login {bridge}")
    return 0


def cmd_login_delete(args: argparse.Namespace) -> int:
    asyncio.run(mqtt_logins.delete(_settings(), args.login))
    print(f"deleted MQTT login {args.login}")
    return 0


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ms else "-"


def cmd_keys_list(args: argparse.Namespace) -> int:
    s = _settings()
    records = asyncio.run(list_keys(s.kafka_bootstrap_servers, s.topics.keys))
    if args.json:
        for r in records:
            print(json.dumps({"prefix": r.prefix, "key_sha256": r.key_sha256, "agent_id": r.agent_id,
                              "status": r.status, "name": r.name, "created_at": r.created_at,
                              "revoked_at": r.revoked_at}))
        return 0
    print(f"{'PREFIX':<16} {'HASH':<16} {'AGENT':<24} {'STATUS':<8} {'CREATED':<21} NAME")
    for r in records:
        print(f"{r.prefix or '-':<16} {r.key_sha256[:16]:<16} {r.agent_id[:24]:<24} {r.status:<8} "
              f"{_when(r.created_at):<21} {r.name or ''}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    s = _settings()
    record = asyncio.run(revoke_key(s.kafka_bootstrap_servers, s.topics.keys, args.ident))
    print(f"revoked {record.prefix or ''} {record.key_sha256} (agent {record.agent_id})")
    return 0


__all__ = ["register"]
