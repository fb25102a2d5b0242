"""Secrets kept in METERLINE_HOME: made once, 0600 from the start, one value when two processes race."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from meterline.errors import ConfigError
from meterline.local.secret_file import (
    OPERATOR_TOKEN_PREFIX,
    ensure_secret,
    new_operator_token,
    operator_token_path,
    read_secret,
    write_secret,
)


def test_made_once_owner_only_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "home" / "operator-token"  # the home does not exist yet
    value, created = ensure_secret(path, new_operator_token)
    assert created and value.startswith(OPERATOR_TOKEN_PREFIX) and len(value) == len(OPERATOR_TOKEN_PREFIX) + 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_secret(path, lambda: "never used") == (value, False)
    assert read_secret(path) == value
    assert [p.name for p in path.parent.iterdir()] == ["operator-token"]  # no temporary file left behind


def test_a_secret_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "operator-token"
    ensure_secret(path, new_operator_token)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        read_secret(path)


def test_replacing_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "demo" / "demo-agent.key"
    write_secret(path, "first")
    write_secret(path, "second")
    assert read_secret(path) == "second" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_operator_token_lives_in_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLINE_HOME", str(tmp_path))
    assert operator_token_path() == tmp_path / "operator-token"
    assert read_secret(operator_token_path()) is None


def _make(path: str, barrier: multiprocessing.synchronize.Barrier, out: multiprocessing.queues.Queue[str]) -> None:
    barrier.wait()
    out.put(ensure_secret(Path(path), new_operator_token)[0])


def test_racing_processes_end_up_with_one_value(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    path = tmp_path / "operator-token"
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_make, args=(str(path), barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    values = {out.get(timeout=30) for _ in procs}
    for p in procs:
        p.join(30)
    assert values == {read_secret(path)}
    assert sorted(os.listdir(tmp_path)) == ["operator-token"]
