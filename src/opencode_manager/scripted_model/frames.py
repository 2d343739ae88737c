"""The wire form of a scripted answer: OpenAI chat-completions SSE frames or JSON (pure).

Shared by the scripted model's app (app.py) and the keeper's warm-up model
(keeper/warmmodel.py), which serves the same plans over a bare HTTP/1.1 parser.
"""

from __future__ import annotations

import json
from typing import Any, TypeAlias

from .script import Pause, Plan, RawData, ReasoningDelta, TextDelta, ToolCall

Event: TypeAlias = "bytes | Pause"


def _sse(payload: str) -> bytes:
    return f"data: {payload}\n\n".encode()


def _chunk(plan: Plan, completion_id: str, created: int, delta: dict[str, Any]) -> bytes:
    frame = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": plan.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return _sse(json.dumps(frame))


def _tool_call_deltas(call: ToolCall) -> list[dict[str, Any]]:
    """Deltas for one tool call: id and name first, then further argument pieces."""
    deltas: list[dict[str, Any]] = []
    for number, piece in enumerate(call.argument_chunks or ("",)):
        entry: dict[str, Any] = {"index": call.index, "function": {"arguments": piece}}
        if number == 0:
            entry = {
                "index": call.index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": piece},
            }
        deltas.append({"tool_calls": [entry]})
    return deltas


def stream_events(plan: Plan, completion_id: str, created: int) -> list[Event]:
    """SSE frames (and pauses) for a streamed answer to ``plan``."""
    events: list[Event] = []
    role_sent = False

    def delta(content: dict[str, Any]) -> None:
        nonlocal role_sent
        if not role_sent:
            content = {"role": "assistant", **content}
            role_sent = True
        events.append(_chunk(plan, completion_id, created, content))

    for step in plan.steps:
        if isinstance(step, TextDelta):
            delta({"content": step.text})
        elif isinstance(step, ReasoningDelta):
            delta({"reasoning_content": step.text})
        elif isinstance(step, ToolCall):
            for tool_delta in _tool_call_deltas(step):
                delta(tool_delta)
        elif isinstance(step, Pause):
            events.append(step)
        elif isinstance(step, RawData):
            events.append(_sse(step.data))
    if plan.finish_reason is None:
        # Deliberate cutoff: no finish frame, no usage, no [DONE].
        return events
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
    final = {
        **base,
        "model": plan.model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": plan.finish_reason}],
    }
    usage = {**base, "model": plan.model, "choices": [], "usage": plan.usage.as_dict()}
    events += [_sse(json.dumps(final)), _sse(json.dumps(usage)), _sse("[DONE]")]
    return events


def completion_body(plan: Plan, completion_id: str, created: int) -> dict[str, Any]:
    """The ``chat.completion`` JSON object for a non-streamed answer to ``plan``."""
    message: dict[str, Any] = {"role": "assistant", "content": plan.text or None}
    if plan.reasoning:
        message["reasoning_content"] = plan.reasoning
    if plan.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in plan.tool_calls
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": plan.model,
        "choices": [{"index": 0, "message": message, "finish_reason": plan.finish_reason}],
        "usage": plan.usage.as_dict(),
    }
