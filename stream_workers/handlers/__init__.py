"""One handler per source topic: it validates a record and turns it into rows of one table.

``requests`` (gateway batches into ``request_logs``), ``usage`` (bridged billing reports into
``usage_events``) and ``dead_letters`` (the dead-letter topic mirrored into ``dead_letters``). Each is a
``stream_workers.records.Handler``; the processor picks one by the record's topic.
"""

from stream_workers.handlers.dead_letters import DeadLetterHandler
from stream_workers.handlers.requests import RequestHandler
from stream_workers.handlers.usage import UsageHandler

__all__ = ["DeadLetterHandler", "RequestHandler", "UsageHandler"]
