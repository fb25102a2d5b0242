"""API keys: format, hashing, the live registry (compacted Kafka topic) and its admin operations."""

from gateway.keys.format import KEY_PREFIXES, generate_key, hash_key, is_key_format
from gateway.keys.registry import AgentIdentity, KeyRegistry

__all__ = ["KEY_PREFIXES", "AgentIdentity", "KeyRegistry", "generate_key", "hash_key", "is_key_format"]
