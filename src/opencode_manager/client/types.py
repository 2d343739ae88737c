"""Typed views of what we read from OpenCode, tolerant of fields they don't know.

Each keeps the original JSON in ``raw`` so nothing the server sends is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (servers change; we don't crash)."""
    return value if isinstance(value, dict) else {}


_dict = as_dict


@dataclass(frozen=True)
class Session:
    id: str
    title: str
    directory: str | None
    parent_id: str | None
    created: float  # epoch ms
    updated: float
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Session:
        data = _dict(data)
        times = _dict(data.get("time"))
        return cls(
            id=str(data.get("id", "")),
            title=str(data.get("title", "")),
            directory=_str(data.get("directory")),
            parent_id=_str(data.get("parentID")),
            created=_num(times.get("created")),
            updated=_num(times.get("updated")),
            raw=data,
        )


@dataclass(frozen=True)
class Part:
    id: str
    type: str  # text, reasoning, tool, step-start, step-finish, patch, ...
    message_id: str | None
    session_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Part:
        data = _dict(data)
        return cls(
            id=str(data.get("id", "")),
            type=str(data.get("type", "")),
            message_id=_str(data.get("messageID")),
            session_id=_str(data.get("sessionID")),
            raw=data,
        )

    @property
    def text(self) -> str:
        return str(self.raw.get("text") or "")

    @property
    def tool(self) -> str | None:
        return _str(self.raw.get("tool"))

    @property
    def state(self) -> dict[str, Any]:
        return _dict(self.raw.get("state"))

    @property
    def ended(self) -> bool:
        """A text/reasoning part is final once it has an end time."""
        return "end" in _dict(self.raw.get("time"))


@dataclass(frozen=True)
class Message:
    id: str
    role: str
    session_id: str | None
    parent_id: str | None
    error: dict[str, Any] | None
    finish: str | None
    created: float
    completed: float | None
    parts: list[Part]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Message:
        data = _dict(data)
        info = _dict(data.get("info"))
        times = _dict(info.get("time"))
        error = info.get("error")
        return cls(
            id=str(info.get("id", "")),
            role=str(info.get("role", "")),
            session_id=_str(info.get("sessionID")),
            parent_id=_str(info.get("parentID")),
            error=error if isinstance(error, dict) else None,
            finish=_str(info.get("finish")),
            created=_num(times.get("created")),
            completed=_num(times["completed"]) if "completed" in times else None,
            parts=[Part.from_json(p) for p in data.get("parts") or []],
            raw=data,
        )

    @property
    def info(self) -> dict[str, Any]:
        return _dict(self.raw.get("info"))

    @property
    def tokens(self) -> dict[str, Any]:
        return _dict(self.info.get("tokens"))

    @property
    def cost(self) -> float:
        return _num(self.info.get("cost"))


@dataclass(frozen=True)
class Event:
    """One frame of an OpenCode event stream."""

    type: str
    properties: dict[str, Any]
    directory: str | None = None  # only on /global/event

    @property
    def session_id(self) -> str | None:
        """The session an event is about, wherever OpenCode put it."""
        props = self.properties
        if isinstance(props.get("sessionID"), str):
            return str(props["sessionID"])
        for key in ("part", "info"):
            inner = _dict(props.get(key))
            if isinstance(inner.get("sessionID"), str):
                return str(inner["sessionID"])
        if self.type.startswith("session.") and isinstance(_dict(props.get("info")).get("id"), str):
            return str(props["info"]["id"])
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "properties": self.properties}
        if self.directory is not None:
            out["directory"] = self.directory
        return out
