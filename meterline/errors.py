"""The root exception of the server packages and its few subclasses."""


class MeterlineError(Exception):
    """Root of every error Meterline raises on purpose."""


class ConfigError(MeterlineError):
    """Bad configuration: a missing tool, an occupied port, an unusable DSN."""


class InfrastructureError(MeterlineError):
    """A service we depend on (Kafka, Mosquitto, ClickHouse) failed to start or answer."""
