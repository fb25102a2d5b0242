"""Where the seed documents are: ``shared/seeds`` beside the repository (``METERLINE_SHARED`` overrides)."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("METERLINE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def seed(name: str) -> Path:
    path = SHARED / "seeds" / name
    if not path.exists():
        raise FileNotFoundError(f"seed document {path} is missing: shared/ must sit beside the repository "
                                "(or set METERLINE_SHARED)")
    return path
