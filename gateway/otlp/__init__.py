"""OpenTelemetry ingest (OTLP/HTTP traces): an agent instrumented with OpenTelemetry reports to Meterline by
pointing its standard OTLP exporter at the gateway, with no Meterline SDK.

``codec`` turns an ``ExportTraceServiceRequest`` body (protobuf or OTLP's JSON mapping) into the official
``opentelemetry-proto`` message and encodes the answers; ``mapping`` turns its spans into the records the rest
of Meterline already processes: request-log entries on the requests topic and usage records on the usage
topic, so the same workers, dedupe and exactly-once sink count them. The route is ``gateway/routers/otlp.py``;
the mapping is documented as a table in ``docs/otlp.md``.
"""

from gateway.otlp.codec import JSON, PROTOBUF, OtlpEncoding, decode_request, encode_response, encode_status
from gateway.otlp.mapping import SpanMapping, map_spans

__all__ = ["JSON", "PROTOBUF", "OtlpEncoding", "SpanMapping", "decode_request", "encode_response", "encode_status",
           "map_spans"]
