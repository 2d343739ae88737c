"""Every secret ocm holds, in one place: what redaction keeps out of records and output.

The passwords of all instances (local ones, remote ones added by URL and cluster ones alike:
each is a file in $OCM_HOME/secrets) and the fronts' tokens (the MCP bearer token and the
dashboard's login token, files in $OCM_HOME). An agent runs as the same user, so it can read
any of them and print them; the book is how the task runner, the session readers and the
fronts know what to take out again.

Cheap to ask often (the runner asks at every streamed event): the files are read again only
when the secrets directory or a token file changed (mtime, inode). ocm writes every one of
them by rename, which changes the directory too. A change within the last `RACY_S` seconds
is not trusted to be complete (two writes in one clock tick share an mtime), so the book
reads again until it has settled. Values never appear in a repr, a log or an error.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .settings import Settings

#: The files in $OCM_HOME where fronts keep their tokens (`ocm mcp --http`, `ocm dashboard`):
#: a front with a new token file adds it here (tests/test_secretbook.py checks the fronts').
FRONT_TOKENS = ("mcp-token", "dashboard-token")
PASSWORD_SUFFIX = ".password"  # noqa: S105 - a file name
RACY_S = 2.0

_Stamp = tuple[int, int] | None  # (mtime_ns, inode), None: missing


class SecretBook:
    """The secrets kept in one $OCM_HOME, read on demand and cached by modification time."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._secrets_dir = settings.secrets_dir
        self._tokens = tuple(settings.home / name for name in FRONT_TOKENS)
        self._clock = clock
        self._lock = threading.Lock()  # worker threads and the event loop ask at once
        self._stamps: tuple[_Stamp, ...] | None = None
        self._values: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"SecretBook({self._secrets_dir.parent})"

    def values(self) -> tuple[str, ...]:
        """Every secret as it is now (never raises: a file that cannot be read is left out,
        and redaction must never be the reason a task or a read fails)."""
        with self._lock:
            stamps = tuple(_stamp(p) for p in (self._secrets_dir, *self._tokens))
            if stamps != self._stamps:
                self._values = self._read()
                now = self._clock()
                settled = all(s is None or now - s[0] / 1e9 > RACY_S for s in stamps)
                self._stamps = stamps if settled else None
            return self._values

    def _read(self) -> tuple[str, ...]:
        found: list[str] = []
        try:
            names = sorted(os.listdir(self._secrets_dir))
        except OSError:
            names = []
        paths = [self._secrets_dir / n for n in names if n.endswith(PASSWORD_SUFFIX)]
        for path in (*paths, *self._tokens):
            value = _read(path)
            if value and value not in found:
                found.append(value)
        return tuple(found)


def _stamp(path: Path) -> _Stamp:
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_ino)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None
