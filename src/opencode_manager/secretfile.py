"""Secrets that fronts keep in $OCM_HOME (the MCP bearer token, the dashboard's login token):
made once, 0600 from the first byte, shown once, reused after."""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .errors import StateError
from .settings import Settings


@dataclass(frozen=True)
class Secret:
    """A secret, where it is kept, and whether this call made it (show it once)."""

    value: str = field(repr=False)
    path: Path
    created: bool


def load_secret(settings: Settings, name: str, what: str, *, rotate: bool = False) -> Secret:
    """The secret in $OCM_HOME/`name`; a new one when it is missing or empty, or `rotate`.
    `what` names it in errors ("the MCP token")."""
    settings.ensure_home()  # OCM_HOME private (0700) before a secret goes in it
    path = settings.home / name
    current = None if rotate else _read(path, what)
    if current:
        return Secret(current, path, created=False)
    value = secrets.token_urlsafe(32)
    if _store(path, value, what, replace=rotate or current is not None):
        return Secret(value, path, created=True)
    theirs = _read(path, what)  # another process made it first: theirs stands
    if not theirs:
        raise StateError(f"{what} {path} is empty; delete it to get a new one")
    return Secret(theirs, path, created=False)


def _read(path: Path, what: str) -> str | None:
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _store(path: Path, value: str, what: str, *, replace: bool) -> bool:
    """Write 0600 from the first byte; unless `replace`, only if no secret is there (False
    then). The link makes the whole file appear at once: nobody reads half a secret."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    except OSError as exc:
        raise StateError(f"cannot store {what} {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
