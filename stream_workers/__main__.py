"""``python -m stream_workers worker``: run one stream worker process (settings from the environment)."""

from __future__ import annotations

from stream_workers.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
