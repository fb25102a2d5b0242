"""Usage reports from the MQTT bridge (``UsageRecord``) into ``usage_events``."""

from stream_workers.usage.agents import UsageHandler

__all__ = ["UsageHandler"]
