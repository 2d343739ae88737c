"""Unit tests of the pure scripted-model planner."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opencode_manager.scripted_model import (
    Pause,
    RawData,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    plan_response,
)
from opencode_manager.scripted_model.script import choose_behaviour, split_even, split_words

BASH_SCHEMA = {
    "type": "object",
    "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}},
    "required": ["command"],
}
TODO_SCHEMA = {
    "type": "object",
    "properties": {
        "todos": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "content": {"type": "string"},
                    "status": {"type": "string"},
                    "priority": {"type": "string"},
                },
                "required": ["content", "status", "priority"],
            },
        }
    },
    "required": ["todos"],
}
QUESTION_SCHEMA = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "question": {"type": "string"},
                    "header": {"type": "string"},
                    "options": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "label": {"type": "string"},
                                "description": {"type": "string"},
                            },
                        },
                    },
                },
            },
        }
    },
}


def tool(name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OpenAI tool declaration."""
    schema = parameters if parameters is not None else {"type": "object", "properties": {}}
    return {"type": "function", "function": {"name": name, "parameters": schema}}


TOOLS = [
    tool("bash", BASH_SCHEMA),
    tool("todowrite", TODO_SCHEMA),
    tool("question", QUESTION_SCHEMA),
    tool(
        "write",
        {"type": "object", "properties": {"content": {}, "filePath": {}}},
    ),
    tool("read", {"type": "object", "properties": {"filePath": {}, "offset": {}}}),
]


def request(
    *messages: dict[str, Any], tools: list[dict[str, Any]] | None = None, stream: bool = True
) -> dict[str, Any]:
    """A chat-completions request body as OpenCode sends it."""
    return {
        "model": "scripted-model",
        "stream": stream,
        "messages": [{"role": "system", "content": "You are opencode."}, *messages],
        "tools": TOOLS if tools is None else tools,
    }


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def after_tool(
    prompt: str, output: str, name: str = "bash", call_id: str = "call_1"
) -> list[dict[str, Any]]:
    """The messages of a follow-up request once a tool has run."""
    return [
        user(prompt),
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": output},
    ]


def only_call(plan_steps: tuple[object, ...]) -> ToolCall:
    calls = [s for s in plan_steps if isinstance(s, ToolCall)]
    assert len(calls) == 1
    return calls[0]


def test_default_text_is_streamed_in_several_chunks() -> None:
    plan = plan_response(request(user("hello there")))
    assert plan.behaviour == "text"
    assert plan.text == "Scripted reply. You said: hello there"
    assert len([s for s in plan.steps if isinstance(s, TextDelta)]) >= 3
    assert plan.finish_reason == "stop"
    assert plan.error is None
    assert not plan.followup


def test_usage_counts_words() -> None:
    plan = plan_response(request(user("hello there")))
    # "You are opencode." (3) + "hello there" (2)
    assert plan.usage.prompt_tokens == 5
    assert plan.usage.completion_tokens == len(plan.text.split())
    assert plan.usage.total_tokens == plan.usage.prompt_tokens + plan.usage.completion_tokens
    assert plan.usage.as_dict()["total_tokens"] == plan.usage.total_tokens


def test_list_content_and_system_reminders() -> None:
    content = [
        {"type": "text", "text": "please BASH: ls -la"},
        {"type": "text", "text": "<system-reminder>Plan mode TODO REASON</system-reminder>"},
    ]
    plan = plan_response(request({"role": "user", "content": content}))
    assert plan.behaviour == "bash"
    assert json.loads(only_call(plan.steps).arguments)["command"] == "ls -la"
    assert plan.last_user_text is not None
    assert "system-reminder" in plan.last_user_text


def test_default_text_ignores_reminders() -> None:
    content = [
        {"type": "text", "text": "hi"},
        {"type": "text", "text": "<system-reminder>extra</system-reminder>"},
    ]
    plan = plan_response(request({"role": "user", "content": content}))
    assert plan.text == "Scripted reply. You said: hi"


def test_last_user_message_decides() -> None:
    plan = plan_response(
        request(user("BASH: echo old"), {"role": "assistant", "content": "ok"}, user("plain"))
    )
    assert plan.behaviour == "text"


def test_title_request_without_tools_ignores_keywords() -> None:
    plan = plan_response(request(user("Generate a title"), user("ERR500 BASH: ls"), tools=[]))
    assert plan.behaviour == "title"
    assert plan.text == "Scripted Title"
    assert plan.error is None
    assert plan.finish_reason == "stop"
    body = request(user("TODO"))
    del body["tools"]
    assert plan_response(body).text == "Scripted Title"


def test_bash_tool_call_fits_declared_schema() -> None:
    plan = plan_response(request(user("BASH: echo hi\nmore text")))
    call = only_call(plan.steps)
    assert plan.finish_reason == "tool_calls"
    assert call.name == "bash"
    assert call.id == "call_1"
    assert call.index == 0
    assert len(call.argument_chunks) >= 2
    # The declared schema has no "description", so it is left out.
    assert json.loads(call.arguments) == {"command": "echo hi"}


def test_bash_keeps_description_when_declared_or_unknown() -> None:
    schema = {"type": "object", "properties": {"command": {}, "description": {}}}
    plan = plan_response(request(user("BASH: pwd"), tools=[tool("bash", schema)]))
    expected = {"command": "pwd", "description": "Run scripted command"}
    assert json.loads(only_call(plan.steps).arguments) == expected
    plan = plan_response(request(user("BASH: pwd"), tools=[tool("other")]))
    assert json.loads(only_call(plan.steps).arguments) == expected


def test_bash_follow_up_after_tool_result() -> None:
    plan = plan_response(request(*after_tool("BASH: echo hi", "hi\n")))
    assert plan.followup
    assert plan.tool_calls == ()
    assert plan.text == "Tool said: hi\n"
    assert plan.finish_reason == "stop"


def test_tool_call_ids_continue_through_history() -> None:
    history = after_tool("BASH: echo a", "a\n")
    plan = plan_response(request(*history, user("BASH: echo b")))
    assert only_call(plan.steps).id == "call_2"


def test_tool_result_with_list_content() -> None:
    messages = after_tool("BASH: echo hi", "unused")
    messages[-1]["content"] = [{"type": "text", "text": "hi\n"}]
    assert plan_response(request(*messages)).text == "Tool said: hi\n"


def test_todo_tool_call_and_follow_up() -> None:
    plan = plan_response(request(user("TODO")))
    args = json.loads(only_call(plan.steps).arguments)
    assert only_call(plan.steps).name == "todowrite"
    assert [t["status"] for t in args["todos"]] == ["completed", "in_progress", "pending"]
    assert [t["priority"] for t in args["todos"]] == ["high", "medium", "low"]
    assert all("id" not in t for t in args["todos"])
    follow = plan_response(request(*after_tool("TODO", "[]", "todowrite")))
    assert follow.text == "Todos written."


def test_todo_ids_added_when_schema_requires_them() -> None:
    schema = json.loads(json.dumps(TODO_SCHEMA))
    items = schema["properties"]["todos"]["items"]
    items["properties"]["id"] = {"type": "string"}
    items["required"].append("id")
    plan = plan_response(request(user("TODO"), tools=[tool("todowrite", schema)]))
    todos = json.loads(only_call(plan.steps).arguments)["todos"]
    assert [t["id"] for t in todos] == ["1", "2", "3"]


def test_write_and_read() -> None:
    write = only_call(plan_response(request(user("WRITE: /tmp/x.txt"))).steps)
    assert write.name == "write"
    assert json.loads(write.arguments) == {
        "filePath": "/tmp/x.txt",
        "content": "scripted content\n",
    }
    follow = plan_response(request(*after_tool("WRITE: /tmp/x.txt", "Wrote file", "write")))
    assert follow.text.startswith("Wrote /tmp/x.txt.")
    read = only_call(plan_response(request(user("READ: /tmp/x.txt"))).steps)
    assert read.name == "read"
    assert json.loads(read.arguments) == {"filePath": "/tmp/x.txt"}
    follow = plan_response(request(*after_tool("READ: /tmp/x.txt", "1: data", "read")))
    assert follow.text == "Tool said: 1: data"


def test_question_matches_schema() -> None:
    call = only_call(plan_response(request(user("QUESTION"))).steps)
    assert call.name == "question"
    (question,) = json.loads(call.arguments)["questions"]
    # "multiple" is not declared in this schema, so it is dropped.
    assert set(question) == {"question", "header", "options"}
    assert [o["label"] for o in question["options"]] == ["Option A", "Option B"]
    follow = plan_response(request(*after_tool("QUESTION", "Option A", "question")))
    assert follow.text == "You answered: Option A"


def test_reason_streams_reasoning_first() -> None:
    plan = plan_response(request(user("REASON")))
    first = plan.steps[0]
    assert isinstance(first, ReasoningDelta)
    assert plan.reasoning == "Let me think about this carefully"
    assert isinstance(plan.steps[-1], TextDelta)
    assert plan.text.startswith("Scripted reply.")


def test_multi_emits_two_bash_calls() -> None:
    plan = plan_response(request(user("MULTI")))
    calls = plan.tool_calls
    assert [c.index for c in calls] == [0, 1]
    assert [c.id for c in calls] == ["call_1", "call_2"]
    assert [json.loads(c.arguments)["command"] for c in calls] == ["echo one", "echo two"]
    assert plan.finish_reason == "tool_calls"
    messages = after_tool("MULTI", "one\n")
    messages.append({"role": "tool", "tool_call_id": "call_2", "content": "two\n"})
    assert plan_response(request(*messages)).text == "Tool said: one\n\ntwo\n"


def test_call_invokes_named_tools_with_their_json_arguments() -> None:
    tools = [*TOOLS, tool("ocm_task_run", {"type": "object", "properties": {
        "prompt": {"type": "string"}, "instance": {"type": "string"}}})]  # fmt: skip
    prompt = 'CALL ocm_fleet_status {}\nCALL ocm_task_run {"prompt": "SLEEP 9 hi", "instance": "b"}'
    plan = plan_response(request(user(prompt), tools=tools))
    assert plan.behaviour == "call"  # the JSON's SLEEP is the callee's business
    assert [(c.name, json.loads(c.arguments)) for c in plan.tool_calls] == [
        ("ocm_fleet_status", {}),
        ("ocm_task_run", {"prompt": "SLEEP 9 hi", "instance": "b"}),
    ]
    assert plan.finish_reason == "tool_calls"
    followup = plan_response(request(*after_tool(prompt, '{"done": true}', "ocm_task_run")))
    assert followup.text == 'Tool said: {"done": true}'


def test_call_fits_the_arguments_to_the_schema_and_call_bang_sends_them_as_written() -> None:
    tools = [*TOOLS, tool("ocm_task_run", {"type": "object", "properties": {
        "prompt": {"type": "string"}, "directory": {"type": "string"}}})]  # fmt: skip
    prompt = (
        'CALL ocm_task_run {"prompt": "a", "dir": "/x"}\n'
        'CALL! ocm_task_run {"prompt": "b", "dir": "/x"}'
    )
    plan = plan_response(request(user(prompt), tools=tools))
    assert [(c.name, json.loads(c.arguments)) for c in plan.tool_calls] == [
        ("ocm_task_run", {"prompt": "a"}),
        ("ocm_task_run", {"prompt": "b", "dir": "/x"}),
    ]


def test_sleep_pauses_after_first_chunk() -> None:
    plan = plan_response(request(user("SLEEP 1.5")))
    assert isinstance(plan.steps[0], TextDelta)
    assert plan.steps[1] == Pause(1.5)
    assert plan.header_delay == 0
    assert plan.finish_reason == "stop"


def test_sleephdr_delays_headers() -> None:
    plan = plan_response(request(user("SLEEPHDR 2")))
    assert plan.behaviour == "sleephdr"
    assert plan.header_delay == 2.0
    assert not any(isinstance(s, Pause) for s in plan.steps)


def test_slowtext_spreads_text() -> None:
    plan = plan_response(request(user("SLOWTEXT 3 with some more words to split up nicely")))
    texts = [s for s in plan.steps if isinstance(s, TextDelta)]
    pauses = [s.seconds for s in plan.steps if isinstance(s, Pause)]
    assert len(texts) == 10
    assert sum(pauses) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("keyword", "status", "error_type"),
    [
        ("ERR500", 500, "server_error"),
        ("ERR400", 400, "invalid_request_error"),
        ("ERR401", 401, "authentication_error"),
        ("ERR429", 429, "rate_limit_error"),
    ],
)
def test_errors(keyword: str, status: int, error_type: str) -> None:
    plan = plan_response(request(user(f"please {keyword} now")))
    assert plan.error is not None
    assert plan.error.status == status
    assert plan.error.body() == {
        "error": {
            "message": f"scripted error {status} from scripted model",
            "type": error_type,
            "code": str(status),
        }
    }
    expected = {"retry-after-ms": "20"} if status in {429, 500} else {}
    assert plan.error.headers() == expected


def test_malformed_cutoff_empty() -> None:
    malformed = plan_response(request(user("MALFORMED")))
    assert RawData("{this is not json") in malformed.steps
    assert malformed.finish_reason == "stop"
    cutoff = plan_response(request(user("CUTOFF")))
    assert len(cutoff.steps) == 2
    assert cutoff.finish_reason is None
    empty = plan_response(request(user("EMPTY")))
    assert empty.steps == ()
    assert empty.finish_reason == "stop"


def test_keywords_are_case_sensitive() -> None:
    assert choose_behaviour("bash: ls and todo and err500") == "text"
    assert choose_behaviour("SLEEPHDR 1") == "sleephdr"
    assert choose_behaviour("SLEEP 1") == "sleep"


def test_invalid_messages_give_400() -> None:
    plan = plan_response({"model": "m", "messages": "nope"})
    assert plan.error is not None
    assert plan.error.status == 400


def test_model_is_echoed_with_default() -> None:
    assert plan_response(request(user("x"))).model == "scripted-model"
    body = request(user("x"))
    body["model"] = "other"
    assert plan_response(body).model == "other"
    del body["model"]
    assert plan_response(body).model == "scripted-model"


@pytest.mark.parametrize("text", ["", " ", "one", " lead and trail ", "a  b\n c"])
def test_splitting_round_trips(text: str) -> None:
    assert "".join(split_words(text)) == text
    assert "".join(split_even(text, 10)) == text
