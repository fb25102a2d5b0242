"""One MQTT connection to the broker, on gmqtt (``gmqtt.Client``), with PUBACKs reported per packet id.

Why gmqtt, and why one gmqtt client per connection (DESIGN-NOTES, and gmqtt 0.8.0's source):
- asyncio-native (no thread hand-off as with paho-mqtt 2.x), already a dependency of the SDK;
- aiomqtt was the original SDK's choice: it neither reconnects nor tells a publisher which QoS 1 message
  was acknowledged, so a report in flight when the broker went away was lost;
- gmqtt reconnects by itself and replays unacknowledged QoS 1 packets, but only when the broker still has
  the session (``session_present``); when the broker lost it (restart without persistence, MQTT 5 session
  expiry 0, first reconnect after a clean session) it CLEARS those packets, and its reconnect delay is
  fixed. So the SDK keeps its own queue as the source of truth (``_queue.ReportQueue``) and runs its own
  reconnect loop with exponential backoff: each connection is a fresh clean-session gmqtt client whose
  auto-reconnect is switched off, and on loss every unacknowledged report is published again on the next
  connection with the same ``report_id``.
- gmqtt gives no per-message acknowledgement callback, but it keeps each outgoing QoS 1 packet in a
  ``PersistentStorage`` (a constructor argument) and removes it on PUBACK: our storage subclass turns that
  removal into ``on_ack(mid)`` and remembers the packet id ``publish()`` just stored.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Callable

from gmqtt import Client as GmqttClient  # gmqtt ships no type hints: Any (ignore_missing_imports)
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError
from gmqtt.storage import PersistentStorage

from ._config import BrokerConfig, make_ssl_context
from ._errors import AuthenticationError, BrokerConnectionError, TlsVerificationError

__all__ = ["MqttConnection"]

logger = logging.getLogger(__name__)

# gmqtt allows a reconnect while ``failed_connections <= reconnect_retries`` (-1 means unlimited): any
# other negative value switches its own reconnect off, which is what we want (we reconnect ourselves).
_NO_AUTO_RECONNECT = -2
_AUTH_CODES = {4: "bad user name or password", 5: "not authorised (check the user name and password)",
               134: "bad user name or password", 135: "not authorised (check the user name and password)"}


class _GmqttNoise(logging.Filter):
    """gmqtt logs an ERROR each time its (disabled) auto-reconnect declines; that is expected here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "max number of failed connection attempts" not in record.getMessage()


_gmqtt_logger = logging.getLogger(__name__ + ".gmqtt")
_gmqtt_logger.addFilter(_GmqttNoise())


class _AckStorage(PersistentStorage):  # type: ignore[misc]  # untyped base class
    def __init__(self, on_ack: Callable[[int], None]) -> None:
        super().__init__()
        self.last_mid: int | None = None
        self._on_ack = on_ack

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        self.last_mid = mid

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        self._on_ack(mid)


class MqttConnection:
    """Open once with ``open()``; ``lost`` is set when the connection ends for any reason."""

    def __init__(self, config: BrokerConfig, client_id: str, *, keepalive: int,
                 on_message: Callable[[str, bytes], None], on_ack: Callable[[int], None]) -> None:
        self._config = config
        self._ssl: ssl.SSLContext | None = make_ssl_context(config)
        self._keepalive = keepalive
        self.lost = asyncio.Event()
        self._closing = False
        self._opened = False
        self._storage = _AckStorage(on_ack)
        self._client = GmqttClient(client_id or f"billing-sdk-{uuid.uuid4().hex[:12]}", clean_session=True,
                                   persistent_storage=self._storage, logger=_gmqtt_logger)
        self._client.reconnect_retries = _NO_AUTO_RECONNECT
        if config.username is not None:
            self._client.set_auth_credentials(config.username, config.password)
        self._client.on_message = lambda _c, topic, payload, _qos, _props: self._message(on_message, topic, payload)
        self._client.on_disconnect = lambda _c, _packet, exc=None: self._lost()

    @staticmethod
    def _message(handler: Callable[[str, bytes], None], topic: str, payload: bytes) -> int:
        try:
            handler(topic, payload)
        except Exception:
            logger.exception("billing: handling a message on %s failed", topic)
        return 0  # PUBACK reason code "success"

    def _lost(self) -> None:
        if not self.lost.is_set():
            if not self._closing:
                logger.warning("billing: connection to MQTT broker %s:%s lost", self._config.host, self._config.port)
            self.lost.set()

    @property
    def connected(self) -> bool:
        return not self.lost.is_set() and bool(self._client.is_connected)

    async def open(self, timeout: float) -> None:
        """Connect and wait for CONNACK; raises ``BrokerConnectionError`` (or a subclass) on failure."""
        where = f"{self._config.host}:{self._config.port}"
        self._opened = True
        try:
            await asyncio.wait_for(
                self._client.connect(self._config.host, self._config.port, ssl=self._ssl or False,
                                     keepalive=self._keepalive, version=MQTTv311),
                timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            await self.close()
            raise TlsVerificationError(
                f"TLS certificate of MQTT broker {where} did not verify ({exc.verify_message}); "
                "pass ca_file=... or set SSL_CERT_FILE / BILLING_MQTT_CA_FILE") from exc
        except MQTTConnectError as exc:
            await self.close()
            code = exc.args[0] if exc.args else None  # MQTTConnectError(code): the CONNACK return code
            if code in _AUTH_CODES:
                raise AuthenticationError(
                    f"MQTT broker {where} refused user {self._config.username!r}: {_AUTH_CODES[code]}") from exc
            raise BrokerConnectionError(f"MQTT broker {where} refused the connection: {exc}") from exc
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            await self.close()
            raise BrokerConnectionError(f"cannot connect to MQTT broker {where}: {exc!r}") from exc
        if self.lost.is_set():
            raise BrokerConnectionError(f"MQTT broker {where} closed the connection right after CONNACK")

    def publish(self, topic: str, payload: bytes, qos: int) -> int | None:
        """Send one PUBLISH; returns the packet id for QoS 1 (PUBACK arrives as ``on_ack(mid)``)."""
        self._storage.last_mid = None
        self._client.publish(topic, payload, qos=qos)
        return self._storage.last_mid if qos else None

    def subscribe(self, topic: str, qos: int) -> None:
        self._client.subscribe(topic, qos=qos)

    async def close(self) -> None:
        already_lost = self.lost.is_set()
        self._closing = True
        try:
            if self._opened and not already_lost:  # a lost socket cannot carry a DISCONNECT
                await asyncio.wait_for(self._client.disconnect(), 5)
        except Exception as exc:  # noqa: BLE001 - closing a dead connection may fail in many ways
            logger.debug("billing: error while closing the MQTT connection: %r", exc)
        finally:
            self.lost.set()
