"""Where keys are in a TOML text: tomllib keeps no positions, and a fleet file's errors name
their line (pure)."""

from __future__ import annotations

import json
import re

_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_HEADER_RE = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]")
_KEY_RE = re.compile(rf"\s*({_DOTTED})\s*=")
_PART_RE = re.compile(_PART)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line of every table header and `key =` line, by full key path.

    `[instance.web]` gives ("instance", "web"); `port = 1` under it ("instance", "web", "port").
    Lines inside multi-line strings and arrays are skipped.
    """
    found: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    quote: str | None = None  # inside a multi-line string closed by this
    depth = 0  # open brackets of a value that goes on
    for number, line in enumerate(text.split("\n"), start=1):
        if quote is not None or depth > 0:
            quote, depth = _scan_value(line, quote, depth)
            continue
        header = _HEADER_RE.match(line)
        if header:
            table = _split_key(header.group(1))
            found.setdefault(table, number)
            continue
        key = _KEY_RE.match(line)
        if key:
            found.setdefault(table + _split_key(key.group(1)), number)
            quote, depth = _scan_value(line[key.end() :], None, 0)
    return found


def line_of(lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int:
    """The line of `path`, else of the first thing inside it, else of what holds it."""
    while path:
        if path in lines:
            return lines[path]
        inside = [n for p, n in lines.items() if p[: len(path)] == path]
        if inside:
            return min(inside)
        path = path[:-1]
    return 1


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = []
    for part in _PART_RE.findall(dotted):
        if part.startswith('"'):
            try:
                part = json.loads(part)  # TOML's basic-string escapes are JSON's, nearly
            except ValueError:
                part = part[1:-1]
        elif part.startswith("'"):
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


def _scan_value(text: str, quote: str | None, depth: int) -> tuple[str | None, int]:
    """Follow a value to the end of the line: (open multi-line string, open brackets)."""
    i = 0
    while i < len(text):
        if quote is not None:
            end = text.find(quote, i)
            if end < 0:
                return quote, depth
            i, quote = end + 3, None
            continue
        char = text[i]
        if text.startswith('"""', i) or text.startswith("'''", i):
            quote = text[i : i + 3]
            i += 3
            continue
        if char == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif char == "'":
            end = text.find("'", i + 1)
            i = len(text) if end < 0 else end
        elif char == "#":
            break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        i += 1
    return quote, depth


def context_at(text: str, number: int) -> tuple[tuple[str, ...], str | None]:
    """The table that line `number` is in, and the key it assigns (if it does)."""
    lines = text.split("\n")
    table: tuple[str, ...] = ()
    for above in lines[: number - 1]:
        header = _HEADER_RE.match(above)
        if header:
            table = _split_key(header.group(1))
    here = lines[number - 1] if number <= len(lines) else ""
    header, assignment = _HEADER_RE.match(here), _KEY_RE.match(here)
    if header:
        return _split_key(header.group(1)), None
    if assignment:
        return table, ".".join(_split_key(assignment.group(1)))
    return table, None
