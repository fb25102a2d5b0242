"""`meterline up`'s operator token: made in the home unless METERLINE_OPERATOR_TOKEN gives one; the banner
says where it is and never what it is."""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from meterline.settings import StackSettings
from meterline_cli.stack import _banner, local_operator_token


def _infra() -> Any:
    return SimpleNamespace(bootstrap_servers="127.0.0.1:19092", mosquitto=None)  # what the banner reads


def test_made_in_the_home_and_shown_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLINE_HOME", str(tmp_path))
    monkeypatch.delenv("METERLINE_OPERATOR_TOKEN", raising=False)
    made = local_operator_token()
    assert made is not None
    token, path = made
    assert path == tmp_path / "operator-token" and path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_operator_token() == (token, path)  # the next run keeps it

    banner = _banner(StackSettings(), _infra(), "demo-agent", None, path)
    assert f"operator    token in {path}" in banner and token not in banner


def test_the_variable_wins_and_no_file_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLINE_HOME", str(tmp_path))
    monkeypatch.setenv("METERLINE_OPERATOR_TOKEN", "from-the-environment")
    assert local_operator_token() is None
    assert not (tmp_path / "operator-token").exists()
    banner = _banner(StackSettings(), _infra(), "demo-agent", None, None)
    assert "token from METERLINE_OPERATOR_TOKEN" in banner and "from-the-environment" not in banner
