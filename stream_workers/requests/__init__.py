"""Request batches from the gateway (``RequestBatchRecord``) into ``request_logs``."""

from stream_workers.requests.agents import RequestHandler

__all__ = ["RequestHandler"]
