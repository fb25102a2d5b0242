"""Stream workers: the processing path — validate, enrich, deduplicate and store Meterline's events.

Start a worker with ``python -m stream_workers worker`` (or ``meterline worker``), or embed one with
``stream_workers.app.create_app``. See ``stream_workers.app`` for the design.
"""

from stream_workers.errors import StreamWorkerError

__all__ = ["StreamWorkerError"]
