"""The instance log: the server's output and the keeper's notes, rotated by size."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

LOG_TAIL = 20


class LogSink:
    """Appends the server's output and the keeper's notes to the instance log; rotates it."""

    def __init__(self, path: Path, *, max_size: int, keep: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_size = max_size
        self.keep = keep
        self.tail: list[str] = []
        self._open()

    def _open(self) -> None:
        # Open for the keeper's whole life (until the next rotation); closed in close().
        self._file = open(  # noqa: SIM115
            self.path, "a", buffering=1, encoding="utf-8", errors="replace"
        )
        self._size = self._file.tell()
        # Our own stdout/stderr (tracebacks) follow the current file.
        with contextlib.suppress(OSError):
            os.dup2(self._file.fileno(), 1)
            os.dup2(self._file.fileno(), 2)

    def _write(self, text: str) -> None:
        self._file.write(text)
        self._size += len(text.encode("utf-8", errors="replace"))
        if self._size >= self.max_size:
            self.rotate()

    def rotate(self) -> None:
        """name.log -> name.log.1 -> ... -> name.log.<keep>; older ones are deleted."""
        self._file.close()
        for index in range(self.keep, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if index == self.keep:
                older.unlink(missing_ok=True)
            elif older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.keep > 0 and self.path.exists():
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._open()

    def server_line(self, line: str) -> None:
        self._write(line if line.endswith("\n") else line + "\n")
        self.tail.append(line.rstrip("\n"))
        del self.tail[:-LOG_TAIL]

    def note(self, message: str, level: str = "INFO") -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        self._write(f"timestamp={stamp}Z level={level} source=ocm message={message!r}\n")

    def close(self) -> None:
        self._file.close()
