"""A unified diff as lines to colour (pure)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DiffLine:
    kind: str  # add, del, hunk, meta, context
    text: str


def diff_lines(patch: str) -> list[DiffLine]:
    out = []
    for line in patch.splitlines():
        if line.startswith(("+++", "---", "diff ", "index ", "Index:", "===")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "context"
        out.append(DiffLine(kind, line))
    return out


def patch_of(change: dict[str, Any]) -> str:
    """A file change's unified diff: OpenCode's `patch`, or one made from `before`/`after`."""
    patch = change.get("patch")
    if isinstance(patch, str) and patch:
        return patch
    before, after = change.get("before"), change.get("after")
    if not isinstance(before, str) and not isinstance(after, str):
        return ""
    name = str(change.get("file") or "file")
    return "".join(
        difflib.unified_diff(
            str(before or "").splitlines(keepends=True),
            str(after or "").splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
    )
