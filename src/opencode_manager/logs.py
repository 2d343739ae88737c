"""Reading instance logs: tail, filter, follow several files at once."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

_ERROR_RE = re.compile(r"level=(ERROR|FATAL)|^Error:|\bERROR\b|Traceback \(most recent")
_WARN_RE = re.compile(r"level=WARN|\bWARN(ING)?\b")


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


def select(lines: Sequence[str], pattern: re.Pattern[str] | None) -> list[str]:
    return [ln for ln in lines if pattern is None or pattern.search(ln)]


def follow(
    paths: Sequence[tuple[str, Path]],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    interval: float = 0.2,
) -> Iterator[tuple[str, str]]:
    """Yield (label, line) for lines appended to any of the files after this call."""
    positions: dict[Path, int] = {}
    for _, path in paths:
        try:
            positions[path] = path.stat().st_size
        except FileNotFoundError:
            positions[path] = 0
    return _follow(paths, positions, should_stop, interval)


def _follow(
    paths: Sequence[tuple[str, Path]],
    positions: dict[Path, int],
    should_stop: Callable[[], bool],
    interval: float,
) -> Iterator[tuple[str, str]]:
    partial: dict[Path, str] = {}
    while not should_stop():
        produced = False
        for label, path in paths:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < positions[path]:  # truncated or replaced: start over
                positions[path] = 0
            if size == positions[path]:
                continue
            with open(path, "rb") as handle:
                handle.seek(positions[path])
                chunk = handle.read(size - positions[path])
            positions[path] = size
            text = partial.pop(path, "") + chunk.decode("utf-8", errors="replace")
            *complete, rest = text.split("\n")
            if rest:
                partial[path] = rest
            for line in complete:
                produced = True
                yield label, line
        if not produced:
            time.sleep(interval)  # polling files for growth
