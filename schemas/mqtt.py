"""The MQTT billing topics (payloads: ``docs/wire-protocols.md``, section 2).

Names only: the bridge subscribes and publishes them, and the broker's access rules
(``meterline.mqtt_admin``) say who may do which on each.
"""

from __future__ import annotations

from typing import Final

#: client -> server: one usage report (raw key of the published protocol)
REPORT: Final = "billing/report"
#: client -> server: "send me the key list"
KEYS_REQUEST: Final = "billing/keys/request"
#: client -> server: liveness
HEARTBEAT: Final = "billing/heartbeat"
PING: Final = "billing/ping"
#: server -> legacy clients: entries of legacy keys only, each with its raw ``api_key``
KEYS_UPDATE: Final = "billing/keys/update"
#: server -> our SDK: every key's status by SHA-256, never a raw key
KEYS_STATUS: Final = "billing/keys/status"

#: what tenants publish and the bridge receives
CLIENT_TOPICS: Final = (REPORT, KEYS_REQUEST, HEARTBEAT, PING)

__all__ = ["CLIENT_TOPICS", "HEARTBEAT", "KEYS_REQUEST", "KEYS_STATUS", "KEYS_UPDATE", "PING", "REPORT"]
