"""Fixtures for the gt8004 integration tests: a real HTTP ingest sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._sink import Sink


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink().start()
    try:
        yield server
    finally:
        server.mode = "ok"
        server.stop()
