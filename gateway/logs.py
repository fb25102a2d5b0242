"""Logging for the gateway and bridge entry points: plain text, or one JSON object per line.

``METERLINE_LOG_FORMAT=json`` selects JSON lines (``ts``, ``level``, ``logger``, ``msg`` and, for
errors, ``exc``). Nothing here logs request bodies or keys; only entry points call ``configure``.
"""

from __future__ import annotations

import json
import logging
import os
import time

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(level: int = logging.INFO, fmt: str | None = None) -> None:
    """Configure the root logger (replacing earlier handlers) from ``METERLINE_LOG_FORMAT``."""
    handler = logging.StreamHandler()
    use_json = (fmt or os.environ.get("METERLINE_LOG_FORMAT", "text")).lower() == "json"
    handler.setFormatter(JsonFormatter() if use_json else logging.Formatter(_TEXT))
    logging.basicConfig(level=level, handlers=[handler], force=True)


__all__ = ["JsonFormatter", "configure"]
