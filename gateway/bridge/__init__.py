"""The lossless MQTT → Kafka bridge for billing reports (SPEC §3)."""

from gateway.bridge.mqtt import MqttBridge

__all__ = ["MqttBridge"]
