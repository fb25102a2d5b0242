"""Billing SDK: usage reporting over MQTT (public API filled by the SDK issue)."""

__all__: list[str] = []
