"""JSONL output compatible with `opencode run --format json` (pure).

Lines: ``{"type": step_start|text|reasoning|tool_use|step_finish, "timestamp": ms,
"sessionID": ..., "part": {...}}`` and ``{"type": "error", "timestamp", "sessionID", "error"}``.
Like OpenCode's own client we emit a text part once it is complete, a tool part once it has
completed or failed. Unlike `opencode run --attach`, the final step is never dropped: after the
turn ends, parts the stream did not deliver are emitted from the REST messages.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..client.types import Part

_KIND = {
    "step-start": "step_start",
    "step-finish": "step_finish",
    "text": "text",
    "reasoning": "reasoning",
    "tool": "tool_use",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


class JsonlEmitter:
    """Decides which lines to print for the parts of one session's turn."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.user_message_id: str | None = None
        self._emitted: set[str] = set()

    def _ready(self, part: Part) -> bool:
        if part.type in ("text", "reasoning"):
            return part.ended
        if part.type == "tool":
            return part.state.get("status") in ("completed", "error")
        return part.type in ("step-start", "step-finish")

    def part(self, part: Part, *, timestamp: int | None = None) -> dict[str, Any] | None:
        """The line for this part update, or None (not ready, not ours, or already printed)."""
        if part.type not in _KIND or part.id in self._emitted:
            return None
        if part.session_id not in (None, self.session_id):
            return None
        if self.user_message_id is not None and part.message_id == self.user_message_id:
            return None  # the prompt itself
        if not self._ready(part):
            return None
        self._emitted.add(part.id)
        return {
            "type": _KIND[part.type],
            "timestamp": timestamp or _now_ms(),
            "sessionID": self.session_id,
            "part": part.raw,
        }

    def error(self, error: dict[str, Any], *, timestamp: int | None = None) -> dict[str, Any]:
        return {
            "type": "error",
            "timestamp": timestamp or _now_ms(),
            "sessionID": self.session_id,
            "error": error,
        }

    def backfill(self, parts: Iterable[Part]) -> list[dict[str, Any]]:
        """Lines for every finished part the live stream did not deliver, in REST order."""
        lines = []
        for part in parts:
            line = self.part(part)
            if line is not None:
                lines.append(line)
        return lines
