"""Unit tests: building a task result from messages, and the JSONL emitter."""

from __future__ import annotations

from typing import Any

from opencode_manager.client.types import Message, Part
from opencode_manager.tasks.jsonl import JsonlEmitter
from opencode_manager.tasks.transcript import build_turn, find_user_message


def _msg(mid: str, role: str, parts: list[dict[str, Any]], **info: Any) -> Message:
    return Message.from_json(
        {
            "info": {
                "id": mid,
                "role": role,
                "sessionID": "ses_1",
                "time": {"created": 1000},
                **info,
            },
            "parts": [{"sessionID": "ses_1", "messageID": mid, **p} for p in parts],
        }
    )


TOKENS = {"input": 10, "output": 2, "reasoning": 0, "cache": {"read": 1, "write": 0}}
HISTORY = [
    _msg("m0", "user", [{"id": "p0", "type": "text", "text": "old"}]),
    _msg(
        "m1",
        "assistant",
        [{"id": "p1", "type": "text", "text": "old answer"}],
        parentID="m0",
        time={"created": 1000, "completed": 1001},
    ),
    _msg(
        "u", "user", [{"id": "p2", "type": "text", "text": "BASH: echo hi"}], time={"created": 5000}
    ),
    _msg(
        "a1",
        "assistant",
        [
            {"id": "s1", "type": "step-start"},
            {
                "id": "t1",
                "type": "tool",
                "tool": "bash",
                "callID": "c1",
                "state": {
                    "status": "completed",
                    "input": {"command": "echo hi"},
                    "output": "hi\n",
                    "title": "echo hi",
                    "time": {"start": 5100, "end": 5200},
                },
            },
            {"id": "f1", "type": "step-finish", "reason": "tool-calls"},
        ],
        parentID="u",
        tokens=TOKENS,
        cost=0.5,
        time={"created": 5050, "completed": 5300},
    ),
    _msg(
        "a2",
        "assistant",
        [
            {"id": "s2", "type": "step-start"},
            {"id": "x2", "type": "text", "text": "Tool said: hi", "time": {"start": 1, "end": 2}},
            {"id": "f2", "type": "step-finish", "reason": "stop"},
        ],
        parentID="u",
        tokens=TOKENS,
        cost=0.25,
        time={"created": 5400, "completed": 5500},
    ),
]


def test_turn_from_messages() -> None:
    user = find_user_message(HISTORY, "BASH: echo hi", not_before_ms=4000)
    assert user is not None
    assert user.id == "u"
    turn = build_turn(HISTORY, "u")
    assert turn.text == "Tool said: hi"
    assert turn.steps == 2
    assert turn.completed
    assert turn.error is None
    assert turn.cost == 0.75
    assert turn.tokens == {
        "input": 20,
        "output": 4,
        "reasoning": 0,
        "cache": {"read": 2, "write": 0},
    }
    assert turn.tool_calls == [
        {
            "tool": "bash",
            "call_id": "c1",
            "status": "completed",
            "title": "echo hi",
            "input": {"command": "echo hi"},
            "output": "hi\n",
            "error": None,
            "started_at": 5.1,
            "ended_at": 5.2,
        }
    ]


def test_error_and_unfinished_turns() -> None:
    failed = [
        *HISTORY[:3],
        _msg(
            "a1",
            "assistant",
            [],
            parentID="u",
            error={"name": "APIError", "data": {"message": "boom"}},
        ),
    ]
    turn = build_turn(failed, "u")
    assert turn.error == {"name": "APIError", "data": {"message": "boom"}}
    assert turn.completed
    running = [*HISTORY[:3], _msg("a1", "assistant", [], parentID="u")]
    assert not build_turn(running, "u").completed
    assert find_user_message(HISTORY, "BASH: echo hi", not_before_ms=9999) is None


def test_jsonl_emits_finished_parts_once_and_backfills_the_rest() -> None:
    emitter = JsonlEmitter("ses_1")
    emitter.user_message_id = "u"
    parts = build_turn(HISTORY, "u").parts
    pending = Part.from_json(
        {
            "id": "x2",
            "type": "text",
            "text": "Tool",
            "sessionID": "ses_1",
            "messageID": "a2",
            "time": {"start": 1},
        }
    )
    assert emitter.part(pending) is None  # text is printed once complete
    first = emitter.part(parts[0], timestamp=7)
    assert first == {
        "type": "step_start",
        "timestamp": 7,
        "sessionID": "ses_1",
        "part": parts[0].raw,
    }
    assert emitter.part(parts[0]) is None
    lines = emitter.backfill(parts)
    assert [line["type"] for line in lines] == [
        "tool_use",
        "step_finish",
        "step_start",
        "text",
        "step_finish",
    ]
    assert emitter.error({"name": "APIError"})["type"] == "error"


def test_a_task_finishes_when_the_server_ended_its_turn_not_when_someone_looked() -> None:
    """A closed terminal's task is finished by the next look: its duration is the turn's
    (issue 26: 60.0 s recorded for a 20 s sleep)."""
    from opencode_manager.tasks.transcript import finished_at

    history = [
        _msg("u", "user", [{"id": "p", "type": "text", "text": "SLEEP 20"}]),
        _msg(
            "a",
            "assistant",
            [{"id": "q", "type": "text", "text": "done"}],
            parentID="u",
            time={"created": 100_000, "completed": 120_000},
        ),
    ]
    turn = build_turn(history, "u")
    assert turn.ended_at == 120.0
    assert finished_at(turn, started_at=99.5, now=160.0) == 120.0
    # A remote server's clock that disagrees is not believed: before the start, or ahead.
    assert finished_at(turn, started_at=130.0, now=160.0) == 160.0
    assert finished_at(turn, started_at=99.5, now=110.0) == 110.0
    assert finished_at(build_turn(history[:1], "u"), started_at=99.5, now=160.0) == 160.0
