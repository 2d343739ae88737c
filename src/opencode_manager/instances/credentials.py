"""Server passwords: generated per instance, stored 0600 under $OCM_HOME/secrets, never in argv."""

from __future__ import annotations

import contextlib
import os
import secrets

from ..errors import StateError
from ..settings import Settings


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def write_password(settings: Settings, name: str, password: str) -> None:
    """Write atomically with mode 0600 from the first byte (no window where others can read)."""
    path = settings.password_path(name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StateError(f"cannot store the password for {name}: {exc.strerror or exc}") from exc


def read_password(settings: Settings, name: str) -> str | None:
    try:
        return settings.password_path(name).read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read the password of {name}: {exc.strerror or exc}") from exc


def delete_password(settings: Settings, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        settings.password_path(name).unlink()
