"""Who may do what on the MQTT broker: Mosquitto's dynamic-security plugin, driven over ``$CONTROL``.

Why the plugin and not a password file with an ``acl_file``: Mosquitto 2.0's ``acl_file`` never
refuses a SUBSCRIBE, it only filters what is delivered. A tenant subscribed to
``$share/<bridge group>/billing/report`` then still takes its round-robin turn in the bridge's share
group, and every report handed to it is dropped (half of them, with one bridge replica). The plugin
refuses the subscription itself (SUBACK 0x80 / 0x87), and its logins and roles change at run time over
MQTT, without a restart — the same way for ``meterline up`` and for docker-compose.

Logins (the ACL as shipped is ``ROLES`` below; ``docs/wire-protocols.md`` explains it):

- ``meterline-admin`` manages the plugin (``$CONTROL/dynamic-security/#``) and reads ``$SYS``;
- ``meterline-bridge`` (role ``meterline-bridge``) receives the client topics through shared
  subscriptions and publishes the key topics; it picks its own client ids (``meterline-bridge-<host>``);
- tenant logins (role ``meterline-tenant``, plus ``meterline-legacy-tenant`` for clients of the
  original protocol) publish the client topics and read the key status. Each is bound to the client id
  equal to its name, and the tenants' listener sets the client id to the login name
  (``use_username_as_clientid``), so no tenant can connect with the bridge's client id and take over its
  session. Names starting with ``meterline-`` are reserved for the services.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import secrets
import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

from gmqtt import Client, Subscription

from meterline.errors import ConfigError, InfrastructureError
from schemas.mqtt import CLIENT_TOPICS, KEYS_STATUS, KEYS_UPDATE

log = logging.getLogger(__name__)

ADMIN_USER: Final = "meterline-admin"
BRIDGE_USER: Final = "meterline-bridge"
RESERVED_PREFIX: Final = "meterline-"
TENANT_ROLE: Final = "meterline-tenant"
LEGACY_ROLE: Final = "meterline-legacy-tenant"
BRIDGE_ROLE: Final = "meterline-bridge"
ADMIN_ROLE: Final = "admin"  # what `mosquitto_ctrl dynsec init` names it

CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
_LOGIN_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Mosquitto's own default. Our passwords are 256-bit random secrets: stretching adds no strength
# against guessing, only CPU time per CONNECT on the single-threaded broker.
_PBKDF2_ITERATIONS: Final = 101


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


#: The ACL as shipped: role -> allowed actions. Everything else is denied (``DEFAULT_ACCESS``).
ROLES: Final[dict[str, list[dict[str, Any]]]] = {
    TENANT_ROLE: [
        *(_acl("publishClientSend", t) for t in CLIENT_TOPICS),
        _acl("subscribeLiteral", KEYS_STATUS),
        _acl("publishClientReceive", KEYS_STATUS),
    ],
    LEGACY_ROLE: [  # in addition to TENANT_ROLE: the raw keys of legacy keys
        _acl("subscribeLiteral", KEYS_UPDATE),
        _acl("publishClientReceive", KEYS_UPDATE),
    ],
    BRIDGE_ROLE: [
        *(_acl("subscribePattern", f"$share/+/{t}") for t in CLIENT_TOPICS),
        *(_acl("subscribeLiteral", t) for t in CLIENT_TOPICS),
        *(_acl("publishClientReceive", t) for t in CLIENT_TOPICS),
        _acl("publishClientSend", KEYS_UPDATE),
        _acl("publishClientSend", KEYS_STATUS),
    ],
}
#: what nobody may do unless a role allows it (unsubscribing is harmless)
DEFAULT_ACCESS: Final = {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                         "unsubscribe": True}
_ADMIN_ACLS: Final = [
    _acl("publishClientSend", "$CONTROL/dynamic-security/#"),
    _acl("publishClientReceive", "$CONTROL/dynamic-security/#"),
    _acl("subscribePattern", "$CONTROL/dynamic-security/#"),
    _acl("publishClientReceive", "$SYS/#"),
    _acl("subscribePattern", "$SYS/#"),
]


class MqttAdminError(InfrastructureError):
    """The broker refused an administrative command, or could not be reached to send one."""


def check_login_name(login: str) -> str:
    """``login`` if it is a valid tenant login name (it becomes a client id and a topic-safe name)."""
    if not _LOGIN_RE.fullmatch(login):
        raise ConfigError(f"MQTT login {login!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
                          "letter or digit")
    if login.startswith(RESERVED_PREFIX):
        raise ConfigError(f"MQTT login {login!r}: names starting with {RESERVED_PREFIX!r} are reserved for "
                          "Meterline's own services")
    return login


def new_password() -> str:
    """A generated MQTT password (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_password(password: str) -> dict[str, Any]:
    """The plugin's stored form of a password: PBKDF2-SHA512 with a random salt, base64."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": _PBKDF2_ITERATIONS}


def initial_config(admin_password: str) -> dict[str, Any]:
    """The plugin's first configuration file: the admin login only, everything else denied.

    The same content as ``mosquitto_ctrl dynsec init <file> meterline-admin`` (what the compose init
    script runs), with our default access; ``apply_base`` adds the roles and the bridge login.
    """
    return {
        "defaultACLAccess": DEFAULT_ACCESS,
        "clients": [{"username": ADMIN_USER, "textname": "Meterline MQTT admin", **hash_password(admin_password),
                     "roles": [{"rolename": ADMIN_ROLE}]}],
        "groups": [],
        "roles": [{"rolename": ADMIN_ROLE, "acls": _ADMIN_ACLS}],
    }


class DynsecAdmin:
    """An admin connection sending plugin commands; use ``async with connect_admin(...)``."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = asyncio.Lock()
        self._answer: asyncio.Future[list[dict[str, Any]]] | None = None

    def _on_message(self, _client: Client, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        if self._answer is not None and not self._answer.done():
            try:
                self._answer.set_result(json.loads(payload)["responses"])
            except (ValueError, KeyError, TypeError) as exc:
                self._answer.set_exception(MqttAdminError(f"unreadable answer from the broker: {exc!r}"))
        return 0

    async def run(self, *commands: dict[str, Any], timeout: float = 10.0) -> list[dict[str, Any]]:
        """Send ``commands`` in one message; their answers, in order (each may hold an ``error``)."""
        async with self._lock:
            self._answer = asyncio.get_running_loop().create_future()
            self._client.publish(CONTROL_TOPIC, json.dumps({"commands": list(commands)}).encode(), qos=1)
            try:
                return await asyncio.wait_for(self._answer, timeout)
            except TimeoutError:
                raise MqttAdminError("the broker did not answer a dynamic-security command within "
                                     f"{timeout:g} s (is the plugin loaded?)") from None

    def send(self, *commands: dict[str, Any]) -> None:
        """Send ``commands`` without waiting for their answers (for changes that end this session)."""
        self._client.publish(CONTROL_TOPIC, json.dumps({"commands": list(commands)}).encode(), qos=1)

    async def checked(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """``run`` that raises ``MqttAdminError`` for the first command the broker refused."""
        answers = await self.run(*commands)
        for command, answer in zip(commands, answers, strict=False):
            if "error" in answer:
                raise MqttAdminError(f"broker refused {command['command']}: {answer['error']}")
        return answers


@contextlib.asynccontextmanager
async def connect_admin(host: str, port: int, password: str, *, ssl_context: ssl.SSLContext | None = None,
                        username: str = ADMIN_USER, timeout: float = 10.0) -> AsyncIterator[DynsecAdmin]:
    """An admin session on the broker (a listener without ``use_username_as_clientid``)."""
    client = Client(f"{ADMIN_USER}-{uuid.uuid4().hex[:8]}", logger=log)
    client.set_config({"reconnect_retries": 0})
    client.set_auth_credentials(username, password)
    admin = DynsecAdmin(client)
    client.on_message = admin._on_message  # noqa: SLF001 - its own callback
    granted: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_subscribe(_client: Client, _mid: int, qos: tuple[int, ...], _props: Any) -> None:
        if not granted.done():
            granted.set_result(qos)

    client.on_subscribe = on_subscribe
    try:
        await asyncio.wait_for(client.connect(host, port, ssl=ssl_context or False, keepalive=30), timeout)
        client.subscribe([Subscription(CONTROL_TOPIC + "/response", qos=1)])
        codes = await asyncio.wait_for(granted, timeout)
    except Exception as exc:
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise MqttAdminError(f"cannot open an MQTT admin session as {username!r} on {host}:{port}: {exc!r}") from exc
    if any(code >= 0x80 for code in codes):
        await client.disconnect()
        raise MqttAdminError(f"login {username!r} may not administer the broker (dynamic-security plugin "
                             "not loaded, or not the admin login)")
    try:
        yield admin
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)


async def _role_changes(admin: DynsecAdmin, name: str, acls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The commands that make role ``name`` allow exactly ``acls`` (creating it if missing)."""
    (answer,) = await admin.run({"command": "getRole", "rolename": name})
    if "error" in answer:
        return [{"command": "createRole", "rolename": name, "acls": acls}]
    key = ("acltype", "topic", "allow")
    have = {tuple(a.get(k) for k in key) for a in answer["data"]["role"].get("acls", [])}
    want = {tuple(a[k] for k in key): a for a in acls}
    commands = [{"command": "removeRoleACL", "rolename": name, "acltype": kind, "topic": topic}
                for kind, topic, allow in sorted(have) if (kind, topic, allow) not in want]
    return commands + [{"command": "addRoleACL", "rolename": name, **a} for k, a in want.items() if k not in have]


async def apply_base(admin: DynsecAdmin, bridge_password: str, bridge_user: str = BRIDGE_USER) -> None:
    """Make the broker's access rules ``ROLES``/``DEFAULT_ACCESS`` and the bridge login (idempotent)."""
    await admin.checked({"command": "setDefaultACLAccess",
                         "acls": [{"acltype": k, "allow": v} for k, v in DEFAULT_ACCESS.items()]})
    for name, acls in ROLES.items():
        if changes := await _role_changes(admin, name, acls):
            await admin.checked(*changes)
    (answer,) = await admin.run({"command": "getClient", "username": bridge_user})
    if "error" in answer:
        await admin.checked({"command": "createClient", "username": bridge_user, "password": bridge_password,
                             "textname": "Meterline MQTT bridge", "roles": [{"rolename": BRIDGE_ROLE}]})
    else:
        await admin.checked({"command": "setClientPassword", "username": bridge_user, "password": bridge_password})
        if BRIDGE_ROLE not in {r["rolename"] for r in answer["data"]["client"].get("roles", [])}:
            await admin.checked({"command": "addClientRole", "username": bridge_user, "rolename": BRIDGE_ROLE})
    # `mosquitto_ctrl dynsec init` (compose) also lets the admin read '#'. Changing a role disconnects the
    # clients that have it, this session included: sent last, without waiting for an answer.
    if changes := await _role_changes(admin, ADMIN_ROLE, _ADMIN_ACLS):
        admin.send(*changes)


async def create_login(admin: DynsecAdmin, login: str, password: str, *, agent_id: str,
                       legacy: bool = False) -> None:
    """A tenant login ``login`` for agent ``agent_id``, bound to the client id ``login``.

    An existing login of that name gets the new password and roles (a way to reset a lost password).
    """
    check_login_name(login)
    roles = [{"rolename": TENANT_ROLE}, *([{"rolename": LEGACY_ROLE}] if legacy else [])]
    text = f"agent {agent_id}" + (" (legacy)" if legacy else "")
    (answer,) = await admin.run({"command": "createClient", "username": login, "password": password,
                                 "clientid": login, "textname": text, "roles": roles})
    if "error" not in answer:
        return
    current = await admin.checked({"command": "getClient", "username": login})
    had = {r["rolename"] for r in current[0]["data"]["client"].get("roles", [])}
    want = {r["rolename"] for r in roles}
    await admin.checked(
        {"command": "setClientPassword", "username": login, "password": password},
        {"command": "setClientId", "username": login, "clientid": login},
        {"command": "modifyClient", "username": login, "textname": text},
        *({"command": "removeClientRole", "username": login, "rolename": r} for r in sorted(had - want)),
        *({"command": "addClientRole", "username": login, "rolename": r} for r in sorted(want - had)),
    )


async def delete_login(admin: DynsecAdmin, login: str) -> None:
    check_login_name(login)
    await admin.checked({"command": "deleteClient", "username": login})


async def list_logins(admin: DynsecAdmin) -> list[dict[str, Any]]:
    """Tenant logins: ``{"username", "textname", "roles": [...]}`` (services left out)."""
    (answer,) = await admin.checked({"command": "listClients", "verbose": True})
    return [c for c in answer["data"]["clients"] if not str(c.get("username", "")).startswith(RESERVED_PREFIX)]


__all__ = ["ADMIN_USER", "BRIDGE_ROLE", "BRIDGE_USER", "CONTROL_TOPIC", "DEFAULT_ACCESS", "LEGACY_ROLE",
           "RESERVED_PREFIX", "ROLES", "TENANT_ROLE", "DynsecAdmin", "MqttAdminError", "apply_base",
           "check_login_name", "connect_admin", "create_login", "delete_login", "hash_password",
           "initial_config", "list_logins", "new_password"]
