"""Tenant logins on the test broker: made through the broker's admin API, as `meterline mqtt-login` does.

The session broker's ``endpoint.username`` is the bridge's login; clients that report usage log in as a
tenant of their own (``new_tenant``), which is what the access rules of ``meterline.mqtt_admin`` expect.
"""

from __future__ import annotations

import uuid
from typing import Any

from gmqtt import Client

from meterline import mqtt_admin
from meterline.local.mosquitto import MqttEndpoint, MqttLogin

__all__ = ["new_tenant", "tenant_client"]


async def new_tenant(endpoint: MqttEndpoint, *, legacy: bool = False, agent_id: str = "tenant-agent",
                     login: str | None = None) -> MqttLogin:
    """A fresh tenant login (client id bound to its name) on the broker of ``endpoint``."""
    login = login or f"t-{uuid.uuid4().hex[:10]}"
    password = mqtt_admin.new_password()
    async with mqtt_admin.connect_admin(endpoint.host, endpoint.port, endpoint.admin_password) as admin:
        await mqtt_admin.create_login(admin, login, password, agent_id=agent_id, legacy=legacy)
    return MqttLogin(login, password)


async def tenant_client(endpoint: MqttEndpoint, **options: Any) -> Client:
    """A gmqtt client (not connected) logged in as a fresh tenant, with its bound client id: it may connect
    on the services' plain ``port`` too (where the broker keeps the client id the client asks for)."""
    login = await new_tenant(endpoint)
    client = Client(login.username, **options)
    client.set_auth_credentials(login.username, login.password)
    return client
