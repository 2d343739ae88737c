"""Turning a session's messages into a task result (pure: data in, data out).

One prompt makes one "turn": the user message, then one assistant message per model step
(tool steps end with finish=tool-calls, the last one with stop), all with parentID = the user
message. The REST messages are the authority; events only show progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..client.types import Message, Part, as_dict

ABORTED_ERROR = "MessageAbortedError"


@dataclass
class Turn:
    """What one prompt produced."""

    user_message_id: str | None
    text: str = ""
    steps: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, Any] = field(default_factory=dict)
    cost: float = 0.0
    error: dict[str, Any] | None = None
    completed: bool = False  # the last assistant message has finished (or failed)
    parts: list[Part] = field(default_factory=list)  # every part of the turn, in order
    ended_at: float | None = None  # when the server finished its last message (epoch s)


def find_user_message(
    messages: list[Message], prompt: str, *, not_before_ms: float = 0.0
) -> Message | None:
    """Our prompt's user message: the newest user message with this text, sent after we started."""
    for message in reversed(messages):
        if message.role != "user" or message.created < not_before_ms:
            continue
        if message.raw.get("info", {}).get("ocm_stand_in"):
            return message  # the prompt of a session OpenCode could not list
        text = "".join(p.text for p in message.parts if p.type == "text")
        if text.strip() == prompt.strip():
            return message
    return None


def _ms_to_s(value: Any) -> float | None:
    return round(float(value) / 1000.0, 3) if isinstance(value, (int, float)) else None


def tool_call(part: Part) -> dict[str, Any]:
    state = part.state
    times = as_dict(state.get("time"))
    return {
        "tool": part.tool,
        "call_id": part.raw.get("callID"),
        "status": state.get("status"),
        "title": state.get("title"),
        "input": state.get("input"),
        "output": state.get("output"),
        "error": state.get("error"),
        "started_at": _ms_to_s(times.get("start")),
        "ended_at": _ms_to_s(times.get("end")),
    }


def _add_tokens(total: dict[str, Any], tokens: dict[str, Any]) -> None:
    for key in ("input", "output", "reasoning"):
        value = tokens.get(key)
        if isinstance(value, (int, float)):
            total[key] = total.get(key, 0) + value
    cache = tokens.get("cache")
    if isinstance(cache, dict):
        bucket = total.setdefault("cache", {"read": 0, "write": 0})
        for key in ("read", "write"):
            value = cache.get(key)
            if isinstance(value, (int, float)):
                bucket[key] = bucket.get(key, 0) + value


def build_turn(messages: list[Message], user_message_id: str | None) -> Turn:
    """Collect the assistant messages answering `user_message_id` (all after it if None)."""
    turn = Turn(user_message_id=user_message_id)
    turn.tokens = {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}}
    answering: list[Message] = []
    seen_user = user_message_id is None
    for message in messages:
        if message.id == user_message_id:
            seen_user = True
            continue
        if not seen_user or message.role != "assistant":
            continue
        if user_message_id is not None and message.parent_id not in (None, user_message_id):
            continue
        answering.append(message)
    for message in answering:
        _add_tokens(turn.tokens, message.tokens)
        turn.cost += message.cost
        for part in message.parts:
            turn.parts.append(part)
            if part.type == "step-start":
                turn.steps += 1
            elif part.type == "tool":
                turn.tool_calls.append(tool_call(part))
    if answering:
        last = answering[-1]
        texts = [p.text for p in last.parts if p.type == "text" and p.text.strip()]
        turn.text = "\n".join(t.strip() for t in texts)
        turn.error = last.error
        turn.completed = last.completed is not None or last.error is not None
        turn.ended_at = _ms_to_s(last.completed)
    return turn


def finished_at(turn: Turn, started_at: float | None, now: float) -> float:
    """When a task finished (pure): when the server ended its turn, if it says so and that
    lies between the task's start and now, else now. A task whose runner died (a closed
    terminal) is finished by whoever looks next: its duration is the turn's, not the time
    until that look (issue 26: 60.0 s recorded for a 20 s sleep). A remote server's clock
    that disagrees with this one's is not believed."""
    ended = turn.ended_at
    if ended is not None and (started_at is None or started_at <= ended) and ended <= now:
        return ended
    return now


def error_name(error: dict[str, Any] | None) -> str | None:
    if not error:
        return None
    name = error.get("name")
    return str(name) if name else None
