"""OpenCode's messages made fit for one line: colour codes stripped, the cause kept.

OpenCode relays errors as multi-line, sometimes coloured text (a config error quotes the whole
file, a provider error its stack). ocm prints one line and keeps the whole text in the record.
"""

from __future__ import annotations

import re
import time
from typing import Any

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_JSONC_ERRORS = re.compile(r"--- Errors ---\n(.*?)\n--- End ---", re.S)


def strip_ansi(message: str) -> str:
    return ANSI.sub("", message)


def one_line(message: str) -> str:
    """The first non-blank line, without terminal colour codes."""
    lines = [line.strip() for line in strip_ansi(message).splitlines() if line.strip()]
    return lines[0] if lines else ""


def error_summary(name: str | None, data: dict[str, Any]) -> str:
    """One line for an OpenCode error body `{"name": ..., "data": {...}}`.

    A config error names its file and the parser's findings, not the quoted input."""
    message = str(data.get("message") or "")
    found = _JSONC_ERRORS.search(strip_ansi(message))
    detail = "; ".join(line.strip() for line in found.group(1).splitlines() if line.strip()) \
        if found else one_line(message)  # fmt: skip
    path = data.get("path")
    label = name or "error"
    if path:
        label = f"{label} in {path}"
    return f"{label}: {detail}" if detail else label


def human_size(value: int | None) -> str:
    """Bytes for people: `512 B`, `12 KiB`, `339.0 MiB`, `1.2 GiB`; `-` when unknown."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit in ("B", "KiB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def human_duration(seconds: float | None) -> str:
    """`42s`, `3m07s`, `2h05m`, `4d03h`: a duration at the precision a table needs."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"


def ago(timestamp: float | None, now: float | None = None) -> str:
    """`5m02s ago` (`-` for no time)."""
    if not timestamp:
        return "-"
    return human_duration((time.time() if now is None else now) - timestamp) + " ago"


def task_error_line(error: Any) -> str:
    """A task's error as one line: its name and OpenCode's message, which sits in `data`
    (`{"name": "APIError", "data": {"message": "..."}}`) or at the top for ocm's own."""
    if not error:
        return ""
    if not isinstance(error, dict):
        return str(error)
    name = str(error.get("name") or "")
    data = error.get("data")
    message = error.get("message") or (data.get("message") if isinstance(data, dict) else data)
    if not message:
        return name or "error"
    message = " ".join(str(message).split())
    return message if not name or message.startswith(name) else f"{name}: {message}"
