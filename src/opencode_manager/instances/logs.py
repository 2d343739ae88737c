"""Reading instance logs: where each instance's log is, tail, filter, follow several files at
once."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import NotFoundError, UsageError
from ..models import InstanceRecord
from .spec import NAME_RE

if TYPE_CHECKING:
    from .fleet import Fleet

_ERROR_RE = re.compile(r"level=(ERROR|FATAL)|^Error:|\bERROR\b|Traceback \(most recent")
_WARN_RE = re.compile(r"level=WARN|\bWARN(ING)?\b")
_LEVEL_RE = re.compile(r"level=(DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\b")


def is_error(line: str) -> bool:
    return bool(_ERROR_RE.search(line))


def is_warning(line: str) -> bool:
    return not is_error(line) and bool(_WARN_RE.search(line))


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a file, read from the end (logs can be large)."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            block = 8192
            data = b""
            pos = end
            while pos > 0 and data.count(b"\n") <= count:
                step = min(block, pos)
                pos -= step
                handle.seek(pos)
                data = handle.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:]


def rotated(path: Path) -> list[Path]:
    """The log and its rotated files, newest first: name.log, name.log.1, name.log.2, ..."""
    found = [path] if path.exists() else []
    index = 1
    while True:
        older = path.with_name(f"{path.name}.{index}")
        if not older.exists():
            return found
        found.append(older)
        index += 1


def tail_across(path: Path, count: int) -> list[str]:
    """The last `count` lines of a log, reading into rotated files when the current is short."""
    lines: list[str] = []
    for file in rotated(path):
        if len(lines) >= count:
            break
        lines = tail_lines(file, count - len(lines)) + lines
    return lines[-count:] if count > 0 else []


def follow(
    paths: Sequence[tuple[str, Path]],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    interval: float = 0.2,
) -> Iterator[tuple[str, str]]:
    """Yield (label, line) for lines appended to any of the files after this call.

    Like `tail -F`: when a file is rotated (renamed away, a new one created), the rest of the
    old file is read first, then the new one from its start.
    """
    tails = [_Tail(label, path) for label, path in paths]
    return _follow(tails, should_stop, interval)


class _Tail:
    def __init__(self, label: str, path: Path) -> None:
        self.label = label
        self.path = path
        self.handle: BinaryIO | None = None
        self.inode: int | None = None
        self.partial = b""
        self._open(at_end=True)

    def _open(self, *, at_end: bool) -> None:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - held across polls, closed on rotation
        except FileNotFoundError:
            self.handle, self.inode = None, None
            return
        if at_end:
            handle.seek(0, os.SEEK_END)
        self.handle, self.inode = handle, os.fstat(handle.fileno()).st_ino

    def read(self) -> list[str]:
        lines: list[str] = []
        if self.handle is not None:
            lines += self._drain()
        try:
            current = self.path.stat()
        except FileNotFoundError:
            return lines
        if self.handle is None or current.st_ino != self.inode:
            if self.handle is not None:
                self.handle.close()
            self._open(at_end=False)  # a new file: every line of it is new
            lines += self._drain()
        elif current.st_size < (self.handle.tell() if self.handle else 0):
            self.handle.seek(0)  # truncated in place
            lines += self._drain()
        return lines

    def _drain(self) -> list[str]:
        assert self.handle is not None
        chunk = self.handle.read()
        if not chunk:
            return []
        data = self.partial + chunk
        *complete, self.partial = data.split(b"\n")
        return [line.decode("utf-8", errors="replace") for line in complete]

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _follow(
    tails: list[_Tail], should_stop: Callable[[], bool], interval: float
) -> Iterator[tuple[str, str]]:
    try:
        while not should_stop():
            produced = False
            for tail in tails:
                for line in tail.read():
                    produced = True
                    yield tail.label, line
            if not produced:
                time.sleep(interval)  # polling files for growth
    finally:
        for tail in tails:
            tail.close()


LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")


def at_least(line: str, level: str) -> bool:
    """Does this line have at least this level? (Lines without a level pass at INFO and below.)"""
    wanted = LEVELS.index(level.upper())
    found = _LEVEL_RE.search(line)
    if found is None:
        if is_error(line):
            return True
        return wanted <= LEVELS.index("INFO")
    name = found.group(1).upper().replace("WARNING", "WARN").replace("FATAL", "ERROR")
    return LEVELS.index(name) >= wanted if name in LEVELS else True


@dataclass(frozen=True)
class LogLine:
    """One line of an instance's log, with its level (ERROR, WARN or INFO)."""

    instance: str
    line: str
    level: str

    def to_dict(self) -> dict[str, str]:
        return {"instance": self.instance, "level": self.level, "line": self.line}


def level_of(line: str) -> str:
    return "ERROR" if is_error(line) else "WARN" if is_warning(line) else "INFO"


def line_filter(pattern: str | None, level: str | None, lines: int = 0) -> Callable[[str], bool]:
    """A predicate for --grep RE and --level L (bad input, -n included, is a UsageError)."""
    if lines < 0:
        raise UsageError(f"invalid -n {lines}: must be 0 or more")
    try:
        regex = re.compile(pattern) if pattern else None
    except re.error as exc:
        raise UsageError(f"invalid --grep {pattern!r}: {exc}") from None
    if level is not None and level.upper() not in LEVELS:
        raise UsageError(f"invalid --level {level!r}: choose from {', '.join(LEVELS)}")

    def wanted(line: str) -> bool:
        return (regex is None or bool(regex.search(line))) and (
            level is None or at_least(line, level)
        )

    return wanted


def read_logs(
    sources: Sequence[tuple[str, str]], lines: int, pattern: str | None, level: str | None
) -> list[LogLine]:
    """The last `lines` matching lines of each log (across rotated files), log by log."""
    wanted = line_filter(pattern, level, lines)
    out: list[LogLine] = []
    for name, path in sources:
        scan = 100_000 if (pattern or level) else lines
        chosen = (
            [ln for ln in tail_across(Path(path), scan) if wanted(ln)][-lines:] if lines else []
        )
        out += [LogLine(name, ln, level_of(ln)) for ln in chosen]
    return out


async def follow_async(
    sources: Sequence[tuple[str, str]],
    *,
    lines: int = 0,
    pattern: str | None = None,
    level: str | None = None,
    interval: float = 0.2,
) -> AsyncIterator[LogLine]:
    """The last `lines` lines, then lines appended from now on (through rotations), until
    cancelled. Following starts before the tail is read, so no line falls between."""
    wanted = line_filter(pattern, level)
    tails = [_Tail(label, Path(path)) for label, path in sources]
    for item in read_logs(sources, lines, pattern, level):
        yield item
    try:
        while True:
            produced = False
            for tail in tails:
                for line in tail.read():
                    if wanted(line):
                        produced = True
                        yield LogLine(tail.label, line, level_of(line))
            if not produced:
                await asyncio.sleep(interval)  # polling files for growth
    finally:
        for tail in tails:
            tail.close()


@dataclass(frozen=True)
class LogSource:
    """Where one instance's log is: its file here, or, for an instance on a Ray cluster, on
    its host (`host`: its record, for the agent that reads it)."""

    name: str
    path: str
    host: InstanceRecord | None = None


def log_sources(fleet: Fleet, refs: Sequence[str]) -> list[LogSource]:
    """Where the logs of these instances are, each reference looked up once. A removed
    instance whose log is kept (until `ocm cleanup`) is still read, by its name."""
    if not refs:
        raise UsageError("which instances? give names, ports or URLs")
    found: dict[str, LogSource] = {}
    for ref in refs:
        try:
            record = fleet.resolve(ref)
        except NotFoundError:
            path = fleet.settings.log_path(ref)
            if not NAME_RE.match(ref) or not path.exists():
                raise
            found.setdefault(ref, LogSource(ref, str(path)))
            continue
        path = fleet.settings.log_path(record.name)
        host = record if record.spec.node else None
        found.setdefault(record.name, LogSource(record.name, str(path), host))
    return list(found.values())


async def follow_instances(
    fleet: Fleet,
    refs: Sequence[str],
    *,
    lines: int = 0,
    pattern: str | None = None,
    level: str | None = None,
) -> AsyncIterator[LogLine]:
    """`ocm logs -f`: the last `lines` lines of each instance's log, then new ones as they are
    written (through rotations), until cancelled."""
    line_filter(pattern, level, lines)  # bad input first, before looking anything up
    sources = await asyncio.to_thread(log_sources, fleet, refs)
    pairs = [(s.name, s.path) for s in sources]
    async for line in follow_async(pairs, lines=lines, pattern=pattern, level=level):
        yield line
