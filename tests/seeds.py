"""The one place that decides what a test does about the seed documents.

Some tests run the seed documents' own examples. The documents sit in ``shared/seeds`` beside the
repository (``METERLINE_SHARED`` names another ``shared`` directory); a plain clone has none. Then
those tests are skipped, with the missing path as the reason, so the rest of the suite runs. CI has
the seeds and sets ``METERLINE_REQUIRE_SEEDS=1``: there a missing seed fails its tests instead.

- ``needs_seed(name)``: a mark for a test or module (``pytestmark``). It skips at collection when the
  seed is missing and not required; otherwise it does nothing, and ``seed()`` decides.
- ``seed(name)``: the document's path, read inside a test or fixture (never at import time): skips
  the test when the document is missing, fails it when ``METERLINE_REQUIRE_SEEDS=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["REQUIRE_ENV", "needs_seed", "required", "seed", "seed_path"]

REQUIRE_ENV = "METERLINE_REQUIRE_SEEDS"
_REPO = Path(__file__).resolve().parents[1]


def seed_path(name: str) -> Path:
    """Where the seed document ``name`` is expected (it may not exist)."""
    shared = Path(os.environ.get("METERLINE_SHARED") or _REPO.parent / "shared")
    return shared / "seeds" / name


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _missing(path: Path) -> str:
    return (f"seed document {path} is missing (shared/seeds/ beside the repository, or METERLINE_SHARED; "
            f"a plain clone has none)")


def needs_seed(name: str) -> pytest.MarkDecorator:
    path = seed_path(name)
    return pytest.mark.skipif(not path.exists() and not required(), reason=_missing(path))


def seed(name: str) -> Path:
    path = seed_path(name)
    if path.exists():
        return path
    if required():
        pytest.fail(f"{_missing(path)}; {REQUIRE_ENV}=1 requires it", pytrace=False)
    pytest.skip(_missing(path))
