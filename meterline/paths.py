"""Where Meterline keeps its caches and local data.

``METERLINE_HOME`` (default ``~/.local/share/meterline``) holds the local stack's data;
``METERLINE_CACHE`` (default ``~/.cache/meterline``) holds downloaded artifacts such as the Kafka
classpath. Neither lives inside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """Directory of the local stack's persistent data (Kafka log dirs, chDB files, certificates)."""
    return Path(os.environ.get("METERLINE_HOME", Path.home() / ".local" / "share" / "meterline"))


def cache_home() -> Path:
    """Directory of downloaded artifacts, shared by every checkout on the machine."""
    return Path(os.environ.get("METERLINE_CACHE", Path.home() / ".cache" / "meterline"))
