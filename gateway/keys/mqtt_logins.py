"""Tenant logins of the MQTT broker (``meterline mqtt-login create|list|delete|setup``).

A login belongs to one agent (its ``textname`` says which) and is bound to the client id equal to its
name, so one login serves ONE connection at a time: a second connection with the same login replaces
the first (that binding is what keeps tenants off the bridge's session). An agent running several
processes gets a login each (``--login <agent>-2``, ...). Passwords are generated here, printed once and
stored only as the broker's PBKDF2 hash. ``--legacy`` logins may also read ``billing/keys/update``: the
raw values of legacy keys, for clients of the original protocol (``gateway.keys.legacy``).

The commands talk to the broker's admin API (``meterline.mqtt_admin``) at ``MQTT_ADMIN_URL``; without it,
the local stack's broker with the admin password ``meterline up`` keeps in its home.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.errors import RegistryError
from gateway.settings import GatewaySettings
from meterline import mqtt_admin
from meterline.local.secret_file import read_secret
from meterline.paths import data_home
from meterline.settings import StackSettings


@asynccontextmanager
async def admin_session(settings: GatewaySettings) -> AsyncIterator[mqtt_admin.DynsecAdmin]:
    """An admin session on the broker of ``MQTT_ADMIN_URL``, else on the local stack's broker."""
    context: ssl.SSLContext | None = None
    if settings.mqtt_admin_url is not None:
        url = urlsplit(settings.mqtt_admin_url.get_secret_value())
        host, user, password = url.hostname or "127.0.0.1", unquote(url.username or ""), unquote(url.password or "")
        tls = url.scheme in ("mqtts", "ssl", "tls")
        port = url.port or (8883 if tls else 1883)
        if tls:
            context = ssl.create_default_context(cafile=settings.mqtt_ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
    else:
        path = data_home() / "mosquitto" / "admin.password"
        host, port, user = "127.0.0.1", StackSettings().meterline_mqtt_port, mqtt_admin.ADMIN_USER
        password = read_secret(path) or ""
        if not password:
            raise RegistryError(f"no MQTT admin login: set MQTT_ADMIN_URL, or start the local stack "
                                f"(`meterline up` keeps its admin password in {path})")
    async with mqtt_admin.connect_admin(host, port, password, ssl_context=context, username=user) as admin:
        yield admin


async def setup(settings: GatewaySettings) -> str:
    """The broker's roles and default access, and the bridge login of ``MQTT_URL`` (compose's init runs it;
    the local stack does the same at every start). Returns the bridge's login name."""
    _, _, user, password, _ = settings.mqtt_parts()
    if not user or not password:
        raise RegistryError("MQTT_URL must hold the bridge's login (mqtts://meterline-bridge:<password>@host:port)")
    async with admin_session(settings) as admin:
        await mqtt_admin.apply_base(admin, password, bridge_user=user)
    return user


async def create(settings: GatewaySettings, agent_id: str, login: str | None = None, *,
                 legacy: bool = False) -> tuple[str, str]:
    """A new tenant login for ``agent_id`` (named after it unless ``login``); returns (login, password)."""
    name = mqtt_admin.check_login_name(login or agent_id)
    password = mqtt_admin.new_password()
    async with admin_session(settings) as admin:
        await mqtt_admin.create_login(admin, name, password, agent_id=agent_id, legacy=legacy)
    return name, password


async def listing(settings: GatewaySettings) -> list[dict[str, Any]]:
    async with admin_session(settings) as admin:
        return await mqtt_admin.list_logins(admin)


async def delete(settings: GatewaySettings, login: str) -> None:
    async with admin_session(settings) as admin:
        await mqtt_admin.delete_login(admin, login)


__all__ = ["admin_session", "create", "delete", "listing", "setup"]
