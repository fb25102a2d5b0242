"""Real infrastructure started as local processes, for machines without Docker.

``LocalKafka`` runs a single-node Apache Kafka (KRaft) resolved from Maven Central and
``LocalMosquitto`` runs Debian's Mosquitto with a plain and a TLS listener. Both are used by the
test fixtures and by ``meterline up``.
"""

from meterline.local.kafka import KAFKA_VERSION, LocalKafka, ensure_kafka_classpath
from meterline.local.mosquitto import LocalMosquitto, MqttEndpoint

__all__ = ["KAFKA_VERSION", "LocalKafka", "LocalMosquitto", "MqttEndpoint", "ensure_kafka_classpath"]
