"""The lossless MQTT → Kafka bridge for billing reports.

Its topics and payloads are section 2 of ``docs/wire-protocols.md``; why nothing is lost, ``mqtt.py``.
"""

from gateway.bridge.mqtt import MqttBridge

__all__ = ["MqttBridge"]
