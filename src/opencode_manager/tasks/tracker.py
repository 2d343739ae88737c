"""Following one prompt through OpenCode's event stream (pure: events in, signals out).

What ends a turn (OPENCODE-FACTS §6.10): `session.idle` or `session.status{idle}` for our
session, after it was busy; errors and aborts emit idle twice and *before* the final
message.updated, and some failures (unknown agent) emit only `session.error`, so an error is
terminal on its own after a grace period. Subagents run in child sessions with their own idle,
which must not end our turn, but their permission and question asks are ours to answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..client.types import Event, Part, as_dict


@dataclass
class Ask:
    """A permission or question request that blocks the session until answered."""

    kind: str  # "permission" or "question"
    id: str
    session_id: str
    properties: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """What the record keeps of the request (its `request`)."""
        props = self.properties
        if self.kind == "permission":
            return {"permission": props.get("permission"), "patterns": props.get("patterns")}
        questions = props.get("questions") or []
        return {"questions": [q.get("question") for q in questions if isinstance(q, dict)]}

    def entry(self, answer: str) -> dict[str, Any]:
        """The ask as a record's `asks` lists it: the runner's and `ocm answer`'s alike."""
        return {"kind": self.kind, "id": self.id, "session_id": self.session_id,
                "answer": answer, "request": self.summary()}  # fmt: skip


#: The answer of an ask left for somebody else (AskPolicy.LEAVE), until it is answered.
PENDING = "pending"


def note_ask(asks: list[dict[str, Any]], entry: dict[str, Any]) -> bool:
    """Add an answered ask to a record's `asks`, once (by its id): a pending entry takes the
    answer, an answered one stays as it is. Whether anything changed."""
    for known in asks:
        if known.get("id") == entry.get("id"):
            if known.get("answer") != PENDING or entry.get("answer") == PENDING:
                return False
            known["answer"] = entry.get("answer")
            return True
    asks.append(entry)
    return True


@dataclass
class TurnState:
    session_id: str
    busy_seen: bool = False
    error: dict[str, Any] | None = None
    error_seen: bool = False
    user_message_id: str | None = None
    retry_attempt: int = 0  # the provider failed and OpenCode retries: its latest attempt
    retry_message: str | None = None
    children: set[str] = field(default_factory=set)
    parts: dict[str, Part] = field(default_factory=dict)

    @property
    def sessions(self) -> set[str]:
        return {self.session_id, *self.children}


@dataclass
class Signals:
    """What one event means for the caller."""

    text_delta: str = ""  # text appended to a text part of ours (for live output)
    part: Part | None = None  # a part of ours was created or updated
    ask: Ask | None = None
    terminal: bool = False  # our session went idle after being busy
    error: dict[str, Any] | None = None  # our session reported an error
    retry: int = 0  # OpenCode started retry attempt N after a provider error
    answered: tuple[str, str] | None = None  # (ask id, answer): somebody answered an ask


def retry_of(state: TurnState, status: Any) -> int:
    """Note a `/session/status` entry of ours (the polling fallback); the new attempt or 0."""
    entry = as_dict(status)
    attempt = entry.get("attempt")
    if entry.get("type") != "retry" or not isinstance(attempt, int):
        return 0
    new = attempt if attempt > state.retry_attempt else 0
    state.retry_attempt = max(state.retry_attempt, attempt)
    state.retry_message = str(entry.get("message") or "") or state.retry_message
    return new


def feed(state: TurnState, event: Event, *, started_ms: float = 0.0) -> Signals:
    """Update `state` with one event; return what it signals."""
    out = Signals()
    props = event.properties
    sid = event.session_id
    kind = event.type
    if kind == "session.created":
        info = as_dict(props.get("info"))
        if info.get("parentID") in state.sessions and isinstance(info.get("id"), str):
            state.children.add(info["id"])
        return out
    if kind in ("permission.asked", "question.asked"):
        if sid in state.sessions and isinstance(props.get("id"), str):
            out.ask = Ask(
                kind=kind.split(".")[0], id=props["id"], session_id=str(sid), properties=props
            )
        return out
    if kind in ("permission.replied", "question.replied", "question.rejected"):
        request = props.get("requestID")
        if sid in state.sessions and isinstance(request, str):
            out.answered = (request, answer_of(kind, props))
        return out
    if sid != state.session_id:
        return out
    if kind == "session.status":
        status = as_dict(props.get("status"))
        if status.get("type") in ("busy", "retry"):
            state.busy_seen = True
        attempt = status.get("attempt")
        if status.get("type") == "retry" and isinstance(attempt, int):
            if attempt > state.retry_attempt:
                out.retry = attempt
            state.retry_attempt = max(state.retry_attempt, attempt)
            state.retry_message = str(status.get("message") or "") or state.retry_message
        elif status.get("type") == "idle" and (state.busy_seen or state.error_seen):
            out.terminal = True
    elif kind == "session.idle":
        if state.busy_seen or state.error_seen:
            out.terminal = True
    elif kind == "session.error":
        error = props.get("error")
        state.error_seen = True
        if isinstance(error, dict):
            state.error = error
            out.error = error
    elif kind == "message.updated":
        info = as_dict(props.get("info"))
        created = as_dict(info.get("time")).get("created", 0)
        if (
            info.get("role") == "user"
            and state.user_message_id is None
            and isinstance(created, (int, float))
            and created >= started_ms
        ):
            state.user_message_id = str(info.get("id"))
        elif info.get("role") == "assistant":
            state.busy_seen = True
    elif kind == "message.part.updated":
        part = Part.from_json(props.get("part"))
        if part.id:
            state.parts[part.id] = part
            out.part = part
            if part.type != "text" or part.message_id != state.user_message_id:
                state.busy_seen = state.busy_seen or part.type == "step-start"
    elif kind == "message.part.delta":
        part_id = props.get("partID")
        if props.get("field") == "text" and isinstance(props.get("delta"), str):
            known = state.parts.get(str(part_id))
            if known is None or known.type == "text":
                out.text_delta = props["delta"]
    return out


def answer_of(kind: str, props: dict[str, Any]) -> str:
    """How an ask was answered, in a word or a few (as the runner records its own)."""
    if kind == "question.rejected":
        return "rejected"
    if kind == "question.replied":
        answers = props.get("answers")
        flat = [str(a) for group in answers or [] if isinstance(group, list) for a in group]
        return "answered: " + ", ".join(flat) if flat else "answered"
    return str(props.get("reply") or "replied")
