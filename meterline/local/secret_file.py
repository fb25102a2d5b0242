"""Secrets the local stack keeps in ``METERLINE_HOME``: one file each, readable by its owner only (0600).

``meterline up`` makes the operator token here (``operator-token``) so that the gateway it serves and the
``meterline`` commands of a second terminal share it without anyone copying it around; ``meterline demo``
keeps its agent's key here so that it does not make a new key on every run. A secret is created once,
atomically (``O_EXCL``: two processes starting at once end up with the same value), and never logged;
callers print the file's path, not its content.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

from meterline.errors import ConfigError
from meterline.paths import data_home

#: The operator token of the local stack, under ``METERLINE_HOME``.
OPERATOR_TOKEN_FILE: Final = "operator-token"  # noqa: S105 - a file name
#: Prefix of generated operator tokens (API keys start with ``ml_sk_``), so a pasted one is recognisable.
OPERATOR_TOKEN_PREFIX: Final = "ml_op_"  # noqa: S105 - a prefix


def operator_token_path(home: Path | None = None) -> Path:
    """Where the local stack keeps its operator token (``$METERLINE_HOME/operator-token``)."""
    return (home or data_home()) / OPERATOR_TOKEN_FILE


def new_operator_token() -> str:
    """A fresh operator token: 256 random bits."""
    return OPERATOR_TOKEN_PREFIX + secrets.token_hex(32)


def read_secret(path: Path) -> str | None:
    """The secret in ``path`` (None when the file does not exist or is empty).

    Raises ``ConfigError`` when the file is readable by others than its owner: a secret that leaked
    to every local user is not one to keep using silently.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
                          f"`chmod 600 {path}` or delete it to get a new one")
    return text or None


def _write_aside(path: Path, value: str) -> Path:
    """``value`` in a new 0600 file next to ``path`` (0600 from the first byte); returns that file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def write_secret(path: Path, value: str) -> None:
    """Replace ``path`` with ``value`` atomically (a reader sees the old or the new secret, whole)."""
    os.replace(_write_aside(path, value), path)


def ensure_secret(path: Path, make: Callable[[], str]) -> tuple[str, bool]:
    """The secret in ``path``, made with ``make()`` and stored 0600 if there is none; (value, created).

    The new file appears whole (linked into place), and two processes racing end up with one value.
    """
    existing = read_secret(path)
    if existing is not None:
        return existing, False
    value = make()
    tmp = _write_aside(path, value)
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process made it meanwhile: use theirs
        theirs = read_secret(path)
        if theirs is None:
            raise ConfigError(f"{path} exists but is empty: delete it to get a new one") from None
        return theirs, False
    finally:
        tmp.unlink()
    return value, True


__all__ = ["OPERATOR_TOKEN_FILE", "OPERATOR_TOKEN_PREFIX", "ensure_secret", "new_operator_token",
           "operator_token_path", "read_secret", "write_secret"]
