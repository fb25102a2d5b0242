"""Where `meterline sql/dashboard/export` read: the engine when it is free, the running stack's gateway with the
home's operator token when the engine is held, and a sentence naming the home when there is nothing to read.

The engine is never opened here: a held engine is told by its locked status file (as chDB holds it, taken
here by another process), a missing one by its directory.
"""

from __future__ import annotations

import fcntl
import multiprocessing
from pathlib import Path

import pytest

from dashboards.cli import _source
from dashboards.remote import RemoteViews
from meterline.errors import ConfigError
from meterline.local.secret_file import ensure_secret, new_operator_token
from meterline_cli.main import build_parser, main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's environment: no METERLINE_HOME (the default under $HOME), no token, no ClickHouse URL."""
    for name in ("METERLINE_HOME", "CLICKHOUSE_URL", "METERLINE_TOKEN", "METERLINE_OPERATOR_TOKEN",
                 "METERLINE_GATEWAY_URL", "METERLINE_GATEWAY_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path / ".local" / "share" / "meterline"


def _args(*argv: str, command: tuple[str, ...] = ("sql", "SELECT 1")) -> object:
    return build_parser().parse_args([*command, *argv])


def test_no_stack_yet_names_the_home_and_creates_nothing(home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "SELECT count() FROM request_logs"]) == 2
    err = capfd.readouterr().err
    assert err == (f"meterline: error: no Meterline data at {home}/chdb (METERLINE_HOME={home}): start the local "
                   "stack with `meterline up`, or point METERLINE_HOME (or CLICKHOUSE_URL) at the one it uses\n")
    assert not (home.parent.parent.parent / ".local").exists()  # no empty engine directory left behind


def _hold(status: str, held: multiprocessing.synchronize.Event, done: multiprocessing.synchronize.Event) -> None:
    with open(status, "rb") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        held.set()
        done.wait(30)


@pytest.fixture
def held_engine(home: Path) -> object:
    """The home's engine directory with its status file locked by another process, as a running stack has it."""
    (home / "chdb").mkdir(parents=True)
    (home / "chdb" / "status").write_text("PID: 1\n")
    ctx = multiprocessing.get_context("fork")
    held, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(home / "chdb" / "status"), held, done))
    holder.start()
    assert held.wait(30)
    yield
    done.set()
    holder.join(30)


def test_a_held_engine_is_read_through_the_local_gateway_with_the_homes_token(
        home: Path, held_engine: object, capfd: pytest.CaptureFixture[str]) -> None:
    token, _ = ensure_secret(home / "operator-token", new_operator_token)
    source = _source(_args())
    assert isinstance(source, RemoteViews)
    assert source.base_url == "http://127.0.0.1:9092"
    assert source.token.value == token and source.token.source == f"the operator token in {home}/operator-token"
    assert capfd.readouterr() == ("", "")  # the engine was not tried: no "Cannot lock file" before the fallback


def test_a_token_given_wins_over_the_homes(home: Path, held_engine: object, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_secret(home / "operator-token", new_operator_token)
    dashboard = ("dashboard", "--agent", "a")
    monkeypatch.setenv("METERLINE_OPERATOR_TOKEN", "op-from-env")
    assert _source(_args(command=dashboard)).token.value == "op-from-env"  # type: ignore[union-attr]
    monkeypatch.setenv("METERLINE_TOKEN", "key-from-env")
    assert _source(_args(command=dashboard)).token.value == "key-from-env"  # type: ignore[union-attr]
    assert _source(_args("--token", "flag", command=dashboard)).token.value == "flag"  # type: ignore[union-attr]
    # SQL is the operator's: an agent's key left in METERLINE_TOKEN does not shadow the operator token
    assert _source(_args()).token.value == "op-from-env"  # type: ignore[union-attr]
    monkeypatch.delenv("METERLINE_OPERATOR_TOKEN")
    assert _source(_args()).token.source == f"the operator token in {home}/operator-token"  # type: ignore[union-attr]


def test_a_held_engine_without_a_token_names_where_it_looked(home: Path, held_engine: object) -> None:
    with pytest.raises(ConfigError, match=rf"no operator token at {home}/operator-token .*is METERLINE_HOME the "
                                          r"stack's\?\)"):
        _source(_args())


def test_an_explicit_gateway_never_gets_the_homes_token(home: Path, held_engine: object) -> None:
    ensure_secret(home / "operator-token", new_operator_token)
    with pytest.raises(ConfigError, match="reading through the gateway at https://example.com needs a token"):
        _source(_args("--gateway", "https://example.com"))
