"""Unit tests: OpenCode 2.x's messages, events and asks translated into what ocm folds.

Every payload is real: captured from OpenCode 2.1.2 driven by the scripted model
(tests/client/opencode2/capture.py wrote the JSON files beside this one). Each test replays one
turn the way a task sees it: the projected messages through `build_turn` (the record), the
events through the tracker (when the turn ends, with which error, which asks) and both through
the JSONL emitter (`--format json`), and checks it reads as the same turn on 1.x would.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.client import v2translate as tr
from opencode_manager.client.types import Event, Message, Part
from opencode_manager.tasks.jsonl import JsonlEmitter
from opencode_manager.tasks.tracker import Signals, TurnState, feed
from opencode_manager.tasks.transcript import ABORTED_ERROR, Turn, build_turn, error_name

CAPTURED = Path(__file__).parent / "opencode2"


@cache
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CAPTURED / f"{name}.json").read_text())
    assert data["opencode"] == "2.1.2"
    return data


def captured(name: str) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(_load(name)))  # each test its own copy
    return copy


def session_of(data: dict[str, Any]) -> str:
    return str(data["session"]["data"]["id"])


def messages_of(data: dict[str, Any], entries: list[Any] | None = None) -> list[Message]:
    return [
        Message.from_json(m)
        for m in tr.messages(data["messages"] if entries is None else entries, session_of(data))
    ]


def prompt_id(data: dict[str, Any]) -> str:
    return str(data["admissions"][0]["data"]["id"])


def turn_of(name: str) -> Turn:
    data = captured(name)
    return build_turn(messages_of(data), prompt_id(data))


def events_of(data: dict[str, Any]) -> list[Event]:
    translator = tr.EventTranslator()
    return [event for frame in data["events"] for event in translator.translate(frame)]


def follow(name: str) -> tuple[TurnState, list[Signals]]:
    """The tracker fed the turn's events, as the runner feeds it (until the first terminal)."""
    data = captured(name)
    state = TurnState(session_of(data), user_message_id=prompt_id(data))
    seen = []
    for event in events_of(data):
        signals = feed(state, event)
        seen.append(signals)
        if signals.terminal:
            break
    return state, seen


def jsonl_types(name: str) -> list[str]:
    """What `ocm run --format json` prints: live parts, then the REST backfill."""
    data = captured(name)
    emitter = JsonlEmitter(session_of(data))
    emitter.user_message_id = prompt_id(data)
    lines = []
    for event in events_of(data):
        if event.type == "message.part.updated":
            line = emitter.part(Part.from_json(event.properties["part"]))
            if line is not None:
                lines.append(line)
    lines += emitter.backfill(turn_of(name).parts)
    return [line["type"] for line in lines]


# -- turns ---------------------------------------------------------------------------------------
def test_a_text_turn_is_one_step_with_its_text_tokens_and_end() -> None:
    turn = turn_of("text")
    assert (turn.completed, turn.error, turn.steps, turn.tool_calls) == (True, None, 1, [])
    assert turn.text == "Scripted reply. You said: hello there TEXT"
    assert (turn.tokens["input"], turn.tokens["output"], turn.cost) == (1160, 7, 0.0)
    state, signals = follow("text")
    assert signals[-1].terminal
    assert state.error is None
    assert "".join(s.text_delta for s in signals) == turn.text
    assert jsonl_types("text") == ["step_start", "text", "step_finish"]


def test_a_user_message_is_a_1x_user_message_with_its_text_part() -> None:
    data = captured("text")
    [user, answer] = messages_of(data)
    assert (user.role, user.id, user.session_id) == ("user", prompt_id(data), session_of(data))
    assert [(p.type, p.text) for p in user.parts] == [("text", "hello there TEXT")]
    assert (answer.role, answer.parent_id, answer.finish) == ("assistant", user.id, "stop")
    assert answer.raw["info"][tr.NATIVE]["type"] == "assistant"  # what 2.x sent is kept


def test_a_shell_turn_records_the_native_tool_with_its_input_and_output() -> None:
    turn = turn_of("shell")
    [call] = turn.tool_calls
    assert (call["tool"], call["status"], call["input"]) == (
        "shell",
        "completed",
        {"command": "echo hi"},
    )
    assert call["output"] == "hi\n"
    assert call["call_id"] == "call_1"
    assert call["ended_at"] >= call["started_at"] > 0
    assert (turn.text, turn.steps, turn.completed) == ("Tool said: hi", 2, True)
    # The same JSONL lines as 1.x prints for `BASH: echo hi` (tests/tasks/test_tasks.py).
    assert jsonl_types("shell") == [
        "step_start", "tool_use", "step_finish", "step_start", "text", "step_finish"
    ]  # fmt: skip


def test_a_tool_part_from_events_is_the_part_rest_has() -> None:
    data = captured("shell")
    live = [
        e.properties["part"]
        for e in events_of(data)
        if e.type == "message.part.updated" and e.properties["part"]["type"] == "tool"
    ]
    done = live[-1]
    assert done["state"]["status"] == "completed"
    rest = next(p for p in turn_of("shell").parts if p.type == "tool")
    assert done["id"] == rest.id  # one part: the JSONL emitter prints it once
    assert (done["tool"], done["state"]["input"], done["state"]["output"]) == (
        "shell", {"command": "echo hi"}, "hi\n"
    )  # fmt: skip
    assert [p["state"]["status"] for p in live] == ["pending", "running", "running", "completed"]


def test_a_shell_exit_code_is_in_the_output_as_the_model_saw_it() -> None:
    [call] = turn_of("shell-exit").tool_calls
    assert call["output"] == "hi\nerr\n\nExited with code 3"
    assert turn_of("shell-exit").text == "Tool said: " + call["output"]


def test_a_write_turn_is_an_edit_with_a_diff_per_turn() -> None:
    data = captured("write")
    [call] = turn_of("write").tool_calls
    assert (call["tool"], call["status"], call["input"]["path"]) == (
        "write",
        "completed",
        "out.txt",
    )
    [change] = data["diff"]
    assert (change["file"], change["status"], change["additions"]) == ("out.txt", "added", 1)


def test_reasoning_and_text_are_separate_parts() -> None:
    turn = turn_of("reasoning")
    assert [p.type for p in turn.parts] == ["step-start", "reasoning", "text", "step-finish"]
    assert turn.text == "Scripted reply. You said: REASON about it"
    _state, signals = follow("reasoning")
    # Reasoning deltas are not the answer's text.
    assert "".join(s.text_delta for s in signals) == turn.text
    assert jsonl_types("reasoning") == ["step_start", "reasoning", "text", "step_finish"]


def test_a_failed_provider_call_fails_the_turn_with_1x_error_shape() -> None:
    turn = turn_of("failed")
    assert turn.completed
    assert turn.error is not None
    assert turn.error["name"] == "APIError"
    assert turn.error["data"]["statusCode"] == 400
    assert "scripted error 400" in turn.error["data"]["message"]
    _state, signals = follow("failed")
    assert signals[-1].terminal
    assert [s.error["name"] for s in signals if s.error] == ["APIError"]  # said once


def test_an_unknown_model_makes_no_step_but_the_turn_fails() -> None:
    turn = turn_of("unknown-model")
    assert (turn.completed, error_name(turn.error)) == (True, "ProviderModelNotFoundError")
    assert turn.error is not None
    assert turn.error["data"]["message"] == "Model unavailable: nope/nope"


def test_an_unknown_agent_shows_no_prompt_but_its_failure() -> None:
    data = captured("unknown-agent")
    messages = messages_of(data)
    assert [m.role for m in messages] == ["assistant"]  # the prompt stayed in the inbox
    turn = build_turn(messages, None)  # what a task without its user message reads
    assert turn.completed
    assert turn.error is not None
    assert turn.error["data"]["message"] == 'Agent not found: "nosuchagent"'
    state, signals = follow("unknown-agent")
    assert signals[-1].terminal
    assert state.error == turn.error


def test_an_interrupted_turn_is_aborted_as_on_1x() -> None:
    for name in ("interrupted", "interrupted-shell"):
        turn = turn_of(name)
        assert (turn.completed, error_name(turn.error)) == (True, ABORTED_ERROR), name
        state, signals = follow(name)
        assert signals[-1].terminal, name
        assert error_name(state.error) == ABORTED_ERROR, name
    [call] = turn_of("interrupted-shell").tool_calls
    assert (call["status"], call["error"]) == ("error", "Tool execution interrupted")
    assert call["ended_at"] is not None


def test_provider_retries_are_counted_and_an_interrupted_retry_ends_the_turn() -> None:
    state, signals = follow("retry")
    # 2.x's attempts 2 and 3 are the first and second retries, numbered as 1.x numbers them.
    assert [s.retry for s in signals if s.retry] == [1, 2]
    assert state.retry_attempt == 2
    assert state.retry_message == "scripted error 500 from scripted model"
    assert signals[-1].terminal
    # The step waiting for its retry has no end of its own: the idle entry gives it one.
    turn = turn_of("retry")
    assert (turn.completed, error_name(turn.error)) == (True, ABORTED_ERROR)


def test_a_subagent_runs_in_a_child_session_that_does_not_end_the_turn() -> None:
    data = captured("subagent")
    state, signals = follow("subagent")
    [child] = data["children"]["data"]
    assert state.children == {child["id"]}
    ends = [i for i, s in enumerate(signals) if s.terminal]
    assert ends == [len(signals) - 1]  # only our own execution's end
    [call] = turn_of("subagent").tool_calls
    assert call["tool"] == "subagent"
    assert call["input"]["agent"] == "general"
    assert f'sessionID="{child["id"]}"' in call["output"]


def test_a_duplicate_send_adds_no_turn_and_its_idle_is_dropped() -> None:
    data = captured("duplicate")
    assert data["duplicate"]["data"]["id"] == prompt_id(data)  # the first admission again
    assert data["conflict"]["status"] == 409  # the id is global
    entries = data["messages"]
    assert [e["type"] for e in entries] == ["user", "assistant", "idle", "idle"]
    messages = messages_of(data)
    assert [m.role for m in messages] == ["user", "assistant"]
    turn = build_turn(messages, prompt_id(data))
    assert (turn.completed, turn.error, turn.text) == (
        True, None, "Scripted reply. You said: hello duplicate"
    )  # fmt: skip


def test_a_turn_lost_with_its_server_is_never_taken_for_finished() -> None:
    data = captured("lost")
    mid = prompt_id(data)
    # After kill -9 and a restart: the step is incomplete, nothing runs, no idle.
    after_restart = build_turn(messages_of(data, data["messages_after_restart"]), mid)
    assert not after_restart.completed
    assert data["active_after_restart"] == {}
    # Re-sending the same id runs nothing and appends an idle "succeeded" at once: not the
    # turn's end (the rule of notes §6: id known + step incomplete + not active = lost).
    assert data["resend"]["data"]["id"] == mid
    assert [e["type"] for e in data["messages"]] == ["user", "assistant", "idle"]
    assert data["messages"][-1]["outcome"] == "succeeded"
    assert not build_turn(messages_of(data), mid).completed


def test_a_running_turn_keeps_its_last_step_open() -> None:
    data = captured("shell")
    first_step = data["messages"][:2]  # the user message and the tool step, no idle yet
    turn = build_turn(messages_of(data, first_step), prompt_id(data))
    assert not turn.completed
    assert [p.type for p in turn.parts] == ["step-start", "tool"]  # no step-finish yet


def test_a_prompt_waiting_in_the_inbox_is_no_turn_yet() -> None:
    data = captured("queued")
    assert data["messages_before"] == []
    assert data["message_by_id"]["status"] == 404
    assert [i["id"] for i in data["inbox"]["data"]] == [prompt_id(data)]


# -- asks ----------------------------------------------------------------------------------------
def test_a_permission_ask_reads_as_1x_and_its_reply_is_recorded() -> None:
    data = captured("permission-once")
    [listed] = [tr.permission(p) for p in data["asks"]["data"]]
    assert (listed["permission"], listed["patterns"]) == ("shell", ["echo approved"])
    assert listed["sessionID"] == session_of(data)
    _state, signals = follow("permission-once")
    [asked] = [s.ask for s in signals if s.ask]
    assert (asked.kind, asked.id, asked.properties["permission"]) == (
        "permission", listed["id"], "shell"
    )  # fmt: skip
    assert [s.answered for s in signals if s.answered] == [(listed["id"], "once")]
    assert turn_of("permission-once").tool_calls[0]["status"] == "completed"


def test_a_rejected_permission_fails_the_tool_and_the_turn_goes_on() -> None:
    turn = turn_of("permission-reject")
    [call] = turn.tool_calls
    assert (call["status"], call["error"]) == (
        "error", "rejected by ocm: nobody is there to approve it"
    )  # fmt: skip
    assert (turn.completed, turn.error) == (True, None)


def test_a_form_reads_as_a_1x_question_and_its_answer_as_1x_answers() -> None:
    data = captured("form-answer")
    [question] = [tr.question(f) for f in data["asks"]["data"]]
    [asked] = question["questions"]
    assert asked["question"] == "Which option do you prefer?"
    assert asked["header"] == "Scripted choice"
    assert [o["label"] for o in asked["options"]] == ["Option A", "Option B"]
    assert (asked["multiple"], asked["key"]) == (False, "q0")
    form = data["form"]["data"]
    assert tr.form_answer(form, [["Option B"]]) == {"q0": "Option B"}
    _state, signals = follow("form-answer")
    [ask] = [s.ask for s in signals if s.ask]
    assert (ask.kind, ask.id) == ("question", question["id"])
    assert [s.answered for s in signals if s.answered] == [(question["id"], "answered: Option B")]
    assert turn_of("form-answer").text.startswith("You answered:")


def test_a_rejected_question_is_a_dismissed_form_and_the_turn_ends_as_on_1x() -> None:
    # 2.1.2 ends the execution "interrupted" (reason shutdown) and writes no idle entry.
    data = captured("form-dismiss")
    assert [e["type"] for e in data["messages"]] == ["user", "assistant"]
    assert [e["data"].get("reason") for e in data["events"]
            if e["type"] == "session.execution.interrupted"] == ["shutdown"]  # fmt: skip
    turn = turn_of("form-dismiss")
    assert (turn.completed, turn.error) == (True, None)
    [call] = turn.tool_calls
    assert (call["tool"], call["status"]) == ("question", "error")
    assert "dismissed" in call["error"]
    state, signals = follow("form-dismiss")
    assert [s.answered for s in signals if s.answered] == [(data["form"]["data"]["id"], "rejected")]
    # No terminal event: the poll (not active + turn complete) ends it, without an error.
    assert not any(s.terminal for s in signals)
    assert state.error is None


def test_a_multiple_choice_field_is_answered_with_a_list() -> None:
    form = {"fields": [{"key": "q0", "type": "multiselect",
                        "options": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}]},
                       {"key": "q1", "type": "string", "options": []}]}  # fmt: skip
    assert tr.form_answer(form, [["A", "B"], ["free text"]]) == {
        "q0": ["a", "b"],
        "q1": "free text",
    }


# -- sessions, status, agents, MCP, todos --------------------------------------------------------
def test_a_session_reads_as_1x_with_its_directory() -> None:
    data = captured("subagent")
    [child] = data["children"]["data"]
    made = tr.session(child)
    assert (made["id"], made["parentID"], made["title"]) == (
        child["id"],
        session_of(data),
        "sub task",
    )
    assert made["directory"] == "/w/project"
    assert made["time"]["created"] == child["time"]["created"]


def test_running_sessions_are_busy() -> None:
    data = captured("interrupted")
    assert tr.active({"data": data["active"]}) == {
        session_of(data): {"type": "busy", tr.NATIVE: {"type": "running"}}
    }


def test_agents_are_named_by_id_and_mcp_servers_by_name() -> None:
    agents = tr.agents({"data": [{"id": "build", "name": "Build", "mode": "primary"}]})
    assert [(a["name"], a["displayName"]) for a in agents] == [("build", "Build")]
    assert tr.agents(captured("listing")["agents"]) == []  # not loaded yet: no agents known
    mcp = tr.mcp_status({"data": [{"name": "ocm", "status": {"status": "connected"}}]})
    assert mcp == {"ocm": {"status": "connected"}}


def test_todos_live_only_in_the_todowrite_metadata() -> None:
    todos = [{"content": "First task", "status": "completed"}]
    state = {"status": "completed", "metadata": {"todos": todos}}
    entries = [{"type": "assistant", "content": [{"type": "tool", "name": "todowrite",
                                                  "state": state}]}]  # fmt: skip
    assert tr.todos(entries) == todos
    assert tr.todos(captured("shell")["messages"]) == []


@pytest.mark.parametrize(
    ("native", "name"),
    [
        ({"type": "aborted", "message": "Step interrupted"}, ABORTED_ERROR),
        (
            {"type": "provider.internal", "message": "x", "status": 500, "retryAfterMs": 20},
            "APIError",
        ),
        (
            {"type": "provider.no-route", "message": "Model unavailable"},
            "ProviderModelNotFoundError",
        ),
        ({"type": "unknown", "message": "Agent not found"}, "UnknownError"),
        ({"type": "tool.execution", "message": "No tool"}, "tool.execution"),
    ],
)
def test_errors_keep_their_message_and_native_type(native: dict[str, Any], name: str) -> None:
    made = tr.error(native)
    assert made["name"] == name
    assert (made["data"]["message"], made["data"]["type"]) == (native["message"], native["type"])


def test_every_translated_event_says_what_it_was() -> None:
    for name in ("shell", "permission-once", "form-answer", "subagent", "retry"):
        for event in events_of(captured(name)):
            assert isinstance(event.properties[tr.NATIVE], str)
            if event.type not in ("server.connected", "shell.exited", "shell.deleted"):
                assert event.session_id is not None, event
