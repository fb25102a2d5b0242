"""gt8004: request logging for AI agents.

```python
from gt8004 import GT8004Logger, RequestLogEntry
from gt8004.middleware.fastapi import GT8004Middleware
```
"""

from __future__ import annotations

from ._config import TransportConfig, TransportStats
from ._entry import RequestLogEntry
from ._errors import ConfigError, GT8004Error
from ._limits import LimitChecker, LimitDecision
from ._logger import GT8004Logger
from ._version import SDK_VERSION

__all__ = [
    "SDK_VERSION",
    "ConfigError",
    "GT8004Error",
    "GT8004Logger",
    "LimitChecker",
    "LimitDecision",
    "RequestLogEntry",
    "TransportConfig",
    "TransportStats",
]
