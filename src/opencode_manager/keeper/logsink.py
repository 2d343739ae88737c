"""The instance log: the server's output and the keeper's notes, rotated by size.

Writing the log must never stop the keeper or the server: a write that fails (disk full, the
logs directory deleted) drops the line and counts it, and the file is reopened (its directory
created again) a moment later. Each line is one `write(2)` on an O_APPEND descriptor opened
0600, so nothing is left half-buffered when the disk fills up.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..redaction import redact_output

LOG_TAIL = 20
REOPEN_AFTER = 1.0  # seconds between attempts to reopen a log that failed


class LogSink:
    """Appends the server's output and the keeper's notes to the instance log; rotates it."""

    def __init__(
        self,
        path: Path,
        *,
        max_size: int,
        keep: int,
        on_trouble: Callable[[str | None], None] | None = None,
        capture_stdio: bool = True,
        clock: Callable[[], float] = time.monotonic,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.path = path
        self.secrets = secrets  # never written: the server's password
        self.max_size = max_size
        self.keep = keep
        self.tail: list[str] = []
        self.dropped = 0  # lines lost to write failures
        self._unreported = 0
        self._on_trouble = on_trouble
        self._capture = capture_stdio
        self._clock = clock
        self._fd: int | None = None
        self._size = 0
        self._retry_at = 0.0
        self._failing: str | None = None
        self._open()

    def _open(self) -> bool:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            self._fail(exc)
            return False
        self._fd = fd
        self._size = os.fstat(fd).st_size
        if self._capture:
            # Our own stdout/stderr (tracebacks) follow the current file.
            with contextlib.suppress(OSError):
                os.dup2(fd, 1)
                os.dup2(fd, 2)
        return True

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _fail(self, exc: OSError) -> None:
        self._close()
        self._retry_at = self._clock() + REOPEN_AFTER
        problem = f"cannot write the log {self.path}: {exc.strerror or exc}"
        if self._failing is None and self._on_trouble:
            self._on_trouble(problem)
        self._failing = problem

    def _write(self, text: str) -> None:
        if self._fd is None and (self._clock() < self._retry_at or not self._open()):
            self.dropped += 1
            self._unreported += 1
            return
        data = text.encode("utf-8", errors="replace")
        assert self._fd is not None
        try:
            os.write(self._fd, data)
        except OSError as exc:
            self.dropped += 1
            self._unreported += 1
            self._fail(exc)
            return
        if self._failing is not None:
            self._failing = None
            if self._on_trouble:
                self._on_trouble(None)
            lost, self._unreported = self._unreported, 0
            if lost:
                self.note(f"{lost} log line(s) were lost while the log could not be written")
        self._size += len(data)
        if self._size >= self.max_size:
            self.rotate()

    def rotate(self) -> None:
        """name.log -> name.log.1 -> ... -> name.log.<keep>; older ones are deleted."""
        self._close()
        try:
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
        except OSError as exc:
            self._fail(exc)  # reopened (and its directory made again) on the next write
            return
        self._open()

    def server_line(self, line: str) -> None:
        line = redact_output(line, self.secrets)  # the password a 2.x server prints too
        self._write(line if line.endswith("\n") else line + "\n")
        self.tail.append(line.rstrip("\n"))
        del self.tail[:-LOG_TAIL]

    def note(self, message: str, level: str = "INFO") -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        self._write(f"timestamp={stamp}Z level={level} source=ocm message={message!r}\n")

    def close(self) -> None:
        self._close()
