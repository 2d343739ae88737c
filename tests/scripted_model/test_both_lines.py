"""Every keyword of the scripted model on request bodies as each OpenCode line sends them.

The bodies in requests/ are real: captured from what OpenCode 1.18.33 and 2.1.2 sent to the
scripted model (system prompts and tool descriptions trimmed). Each test takes one and puts
the keyword in place of its last user message, so the tools and their schemas are the line's own.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.scripted_model import TextDelta, plan_response
from opencode_manager.scripted_model.script import NO_TODO_TEXT, TOOL_BEHAVIOURS, Plan
from opencode_manager.scripted_model.toolbox import Toolbox

REQUESTS = Path(__file__).parent / "requests"
V1, V2 = "1.18.33", "2.1.2"


def captured(version: str, name: str) -> dict[str, Any]:
    """A copy of one captured request body."""
    bodies = json.loads((REQUESTS / f"opencode-{version}.json").read_text())
    body = bodies[name]
    assert isinstance(body, dict)
    return copy.deepcopy(body)


def asking(version: str, text: str, body: str = "plain") -> dict[str, Any]:
    """A captured first request of a turn, with ``text`` as its user message."""
    request = captured(version, body)
    assert request["messages"][-1]["role"] == "user"
    request["messages"][-1]["content"] = text
    return request


def calls(plan: Plan) -> list[tuple[str, dict[str, Any]]]:
    return [(c.name, json.loads(c.arguments)) for c in plan.tool_calls]


def test_the_captured_bodies_are_the_lines_own() -> None:
    v1 = Toolbox.of(captured(V1, "plain"))
    v2 = Toolbox.of(captured(V2, "plain"))
    assert {"bash", "todowrite", "task"} <= v1.names
    assert not {"shell", "execute"} & v1.names
    assert {"shell", "execute", "subagent"} <= v2.names
    assert not {"bash", "todowrite"} & v2.names
    # 2.x lists its own tools in Code Mode too (sessions, worktrees, models, MCP resources).
    assert Toolbox.of(captured(V2, "plain")).code_mode_servers == ("opencode",)
    assert Toolbox.of(captured(V2, "mcp")).code_mode_servers == ("ocm", "opencode")
    assert Toolbox.of(captured(V1, "mcp")).code_mode_servers == ()


@pytest.mark.parametrize(("version", "shell"), [(V1, "bash"), (V2, "shell")])
def test_bash_runs_the_lines_shell_tool(version: str, shell: str) -> None:
    plan = plan_response(asking(version, "BASH: echo hi"))
    assert plan.behaviour == "bash"
    assert plan.finish_reason == "tool_calls"
    # Neither line declares a description for its shell tool.
    assert calls(plan) == [(shell, {"command": "echo hi"})]


@pytest.mark.parametrize(("version", "shell"), [(V1, "bash"), (V2, "shell")])
def test_multi_runs_two_shell_calls(version: str, shell: str) -> None:
    plan = plan_response(asking(version, "MULTI"))
    assert calls(plan) == [(shell, {"command": "echo one"}), (shell, {"command": "echo two"})]


@pytest.mark.parametrize(("version", "key"), [(V1, "filePath"), (V2, "path")])
def test_write_and_read_name_the_path_as_the_line_does(version: str, key: str) -> None:
    write = plan_response(asking(version, "WRITE: notes/a.txt"))
    assert calls(write) == [("write", {key: "notes/a.txt", "content": "scripted content\n"})]
    read = plan_response(asking(version, "READ: notes/a.txt"))
    assert calls(read) == [("read", {key: "notes/a.txt"})]


def test_todo_on_1x_writes_todos_with_priorities() -> None:
    [(name, args)] = calls(plan_response(asking(V1, "TODO")))
    assert name == "todowrite"
    assert [(t["status"], t["priority"]) for t in args["todos"]] == [
        ("completed", "high"),
        ("in_progress", "medium"),
        ("pending", "low"),
    ]


def test_todo_on_2x_without_the_tool_answers_in_text_and_ends() -> None:
    plan = plan_response(asking(V2, "TODO"))
    assert plan.behaviour == "todo"
    assert plan.tool_calls == ()
    assert plan.text == NO_TODO_TEXT
    assert plan.finish_reason == "stop"


def test_todo_on_2x_with_experimental_todo_drops_the_priorities() -> None:
    [(name, args)] = calls(plan_response(asking(V2, "TODO", body="todo_enabled")))
    assert name == "todowrite"
    assert args["todos"] == [
        {"content": "First task", "status": "completed"},
        {"content": "Second task", "status": "in_progress"},
        {"content": "Third task", "status": "pending"},
    ]


@pytest.mark.parametrize("version", [V1, V2])
def test_question_asks_the_same_on_both(version: str) -> None:
    [(name, args)] = calls(plan_response(asking(version, "QUESTION")))
    assert name == "question"
    [question] = args["questions"]
    assert question["question"] == "Which option do you prefer?"
    assert [o["label"] for o in question["options"]] == ["Option A", "Option B"]


def test_structured_answers_through_the_tool_only_where_it_is_offered() -> None:
    keyword = 'STRUCTURED {"answer": "42"}'
    v1 = plan_response(asking(V1, keyword, body="structured"))
    assert calls(v1) == [("StructuredOutput", {"answer": "42"})]
    # 2.1.2 has no structured output: the keyword gets a plain reply.
    v2 = plan_response(asking(V2, keyword))
    assert (v2.behaviour, v2.tool_calls) == ("text", ())
    assert v2.text == f"Scripted reply. You said: {keyword}"


def test_an_mcp_tool_is_called_directly_on_1x() -> None:
    plan = plan_response(asking(V1, 'CALL ocm_task_get {"task_id": "t-1"}', body="mcp"))
    assert calls(plan) == [("ocm_task_get", {"task_id": "t-1"})]


def test_an_mcp_tool_runs_through_code_mode_on_2x() -> None:
    text = 'CALL ocm_instances_list {}\nCALL ocm_task_get {"task_id": "t-1"}'
    plan = plan_response(asking(V2, text, body="mcp"))
    assert plan.behaviour == "call"
    assert calls(plan) == [
        ("execute", {"code": 'return await tools["ocm"]["instances_list"]({})'}),
        ("execute", {"code": 'return await tools["ocm"]["task_get"]({"task_id": "t-1"})'}),
    ]


def test_an_mcp_tool_of_no_listed_server_is_called_as_asked() -> None:
    # No "ocm" in the Code Mode catalog (not connected): OpenCode itself says there is no such
    # tool. Its own Code Mode tools are reached by the names 1.x offers them under.
    plan = plan_response(asking(V2, "CALL ocm_instances_list {}\nCALL opencode_list_mcp_resources"))
    assert calls(plan) == [
        ("ocm_instances_list", {}),
        ("execute", {"code": 'return await tools["opencode"]["list_mcp_resources"]({})'}),
    ]


def test_call_translates_tool_and_argument_names_between_lines() -> None:
    on_v2 = plan_response(
        asking(V2, 'CALL bash {"command": "ls"}\nCALL write {"filePath": "a", "content": "b"}')
    )
    assert calls(on_v2) == [("shell", {"command": "ls"}), ("write", {"path": "a", "content": "b"})]
    on_v1 = plan_response(asking(V1, 'CALL shell {"command": "ls"}\nCALL read {"path": "a"}'))
    assert calls(on_v1) == [("bash", {"command": "ls"}), ("read", {"filePath": "a"})]


@pytest.mark.parametrize("version", [V1, V2])
def test_the_follow_up_after_the_shell_tool_ends_the_turn(version: str) -> None:
    plan = plan_response(captured(version, "bash_followup"))
    assert plan.followup
    assert plan.tool_calls == ()
    assert plan.text == "Tool said: hi\n"
    assert plan.finish_reason == "stop"


KEYWORDS = [
    "plain words",
    "BASH: echo hi",
    "TODO",
    "WRITE: a.txt",
    "READ: a.txt",
    "QUESTION",
    "REASON",
    "MULTI",
    'STRUCTURED {"answer": "x"}',
    "CALL ocm_instances_list {}",
    "SLEEP 0.1",
    "SLEEPHDR 0.1",
    "SLOWTEXT 0.1",
    "ERR500",
    "ERR400",
    "ERR401",
    "ERR429",
    "MALFORMED",
    "CUTOFF",
    "EMPTY",
]


@pytest.mark.parametrize("body", [(V1, "plain"), (V1, "mcp"), (V2, "plain"), (V2, "mcp")])
@pytest.mark.parametrize("keyword", KEYWORDS)
def test_every_keyword_calls_only_tools_the_line_offers(
    keyword: str, body: tuple[str, str]
) -> None:
    version, name = body
    request = asking(version, keyword, body=name)
    offered = Toolbox.of(request).names
    plan = plan_response(request)
    if name == "plain" and keyword.startswith("CALL "):
        return  # no MCP server on that one: asked as named (above)
    assert {c.name for c in plan.tool_calls} <= offered, keyword
    if plan.behaviour in TOOL_BEHAVIOURS and plan.error is None and plan.tool_calls:
        assert plan.finish_reason == "tool_calls"
    elif plan.error is None and keyword != "CUTOFF":
        assert plan.finish_reason == "stop"
        assert plan.steps == () or any(isinstance(s, TextDelta) for s in plan.steps)
