"""The MCP front through the official SDK's own client: in memory (no subprocess) for the
tools and gates, then `ocm mcp` spawned over stdio against real servers."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client

from opencode_manager import Settings
from opencode_manager.mcpserver.tools import build_server

from conftest import Fleet

pytestmark = pytest.mark.anyio

READ_TOOLS = {
    "fleet_status", "instances_list", "instance_get", "instance_logs", "events_list",
    "sessions_list", "task_get", "tasks_list", "batch_get", "batches_list", "metrics_get",
    "task_wait", "session_get",
}  # fmt: skip
WRITE_TOOLS = {
    "instances_start", "task_run", "batch_run", "session_permission_reply",
    "session_question_answer",
}  # fmt: skip
DESTRUCTIVE_TOOLS = {"instances_stop", "instance_restart", "task_abort", "batch_cancel"}


def _settings() -> Settings:
    return Settings.load(home=Path(os.environ["OCM_HOME"]))


async def _names(*, read_only: bool = False, destructive: bool = True) -> set[str]:
    server = build_server(_settings(), read_only=read_only, destructive=destructive)
    async with Client(server) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


async def test_the_gates_decide_which_tools_exist() -> None:
    assert await _names() == READ_TOOLS | WRITE_TOOLS | DESTRUCTIVE_TOOLS
    assert await _names(read_only=True) == READ_TOOLS
    assert await _names(destructive=False) == READ_TOOLS | WRITE_TOOLS


async def test_every_tool_has_a_title_a_description_and_honest_hints() -> None:
    async with Client(build_server(_settings())) as client:
        for tool in (await client.list_tools()).tools:
            assert tool.title, tool.name
            assert tool.description, tool.name
            assert tool.annotations is not None, tool.name
            assert tool.annotations.read_only_hint == (tool.name in READ_TOOLS), tool.name
            assert tool.annotations.destructive_hint == (tool.name in DESTRUCTIVE_TOOLS), tool.name
            assert "." not in tool.name, tool.name
            assert "/" not in tool.name, tool.name


async def _call(name: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
    async with Client(build_server(_settings())) as client:
        result = await client.call_tool(name, arguments)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    return bool(result.is_error), result.structured_content if not result.is_error else text


async def test_reads_on_an_empty_fleet_and_errors_a_model_can_fix() -> None:
    assert await _call("instances_list", {}) == (False, {"instances": []})
    error, frame = await _call("fleet_status", {})
    assert not error
    assert frame["totals"]["instances"] == 0
    error, text = await _call("instance_get", {"name": "nope"})
    assert error
    assert "no instance named 'nope'" in text
    error, text = await _call("task_get", {"task_id": "t-nope"})
    assert error
    assert "no task 't-nope'" in text
    error, text = await _call("instance_logs", {"name": "x", "lines": 0})
    assert error  # below the parameter's limit
    assert "lines" in text


async def test_batch_and_session_tools_say_what_is_wrong() -> None:
    error, text = await _call("batch_run", {})
    assert error
    assert "one of the two" in text
    error, text = await _call("batch_run", {"file": "/definitely/missing.jsonl"})
    assert error
    assert "cannot read /definitely/missing.jsonl" in text
    error, text = await _call("batch_run", {"tasks": [{"prompt": "hi"}]})
    assert error
    assert "no running instance" in text
    error, text = await _call("batch_run", {"tasks": [{"prompt": ""}]})
    assert error
    assert "missing or empty prompt" in text
    error, text = await _call("session_get", {"session_id": "ses_nope"})
    assert error
    assert "no session ses_nope" in text
    error, text = await _call("batch_cancel", {"batch_id": "b-nope"})
    assert error
    assert "confirm: true" in text


async def test_resources_mirror_the_read_tools() -> None:
    async with Client(build_server(_settings())) as client:
        assert [str(r.uri) for r in (await client.list_resources()).resources] == ["ocm://fleet"]
        templates = (await client.list_resource_templates()).resource_templates
        assert sorted(t.uri_template for t in templates) == [
            "ocm://batches/{batch_id}",
            "ocm://instances/{name}",
            "ocm://tasks/{task_id}",
        ]
        fleet = await client.read_resource("ocm://fleet")
        assert json.loads(getattr(fleet.contents[0], "text", ""))["instances"] == []
        with pytest.raises(MCPError, match="no task 't-nope'"):
            await client.read_resource("ocm://tasks/t-nope")


async def test_destructive_tools_want_confirm() -> None:
    error, text = await _call("instances_stop", {"names": ["oc-1"]})
    assert error
    assert "confirm: true" in text
    error, text = await _call("instances_stop", {"names": ["oc-1"], "confirm": True})
    assert error
    assert "no instance named 'oc-1'" in text  # past the gate, a readable error


async def test_an_unknown_argument_is_refused_naming_the_known_ones() -> None:
    """`task_run {"dir": "/etc"}` ran in the default directory: the SDK dropped `dir`."""
    error, text = await _call("task_run", {"prompt": "hi", "dir": "/etc"})
    assert error
    assert text == (
        "task_run: unknown argument 'dir' (did you mean 'directory'?); "
        "task_run takes: prompt, instance, directory, wait_s, asks, model, max_cost, "
        "max_tokens, recover, fallback, key"
    )
    error, text = await _call("fleet_status", {"verbose": True})
    assert (error, text) == (True, "fleet_status: unknown argument 'verbose'; "
                                   "fleet_status takes no arguments")  # fmt: skip
    assert await _call("tasks_list", {}) == (False, {"tasks": []})  # nothing ran


async def test_every_tool_advertises_that_it_takes_nothing_else() -> None:
    async with Client(build_server(_settings())) as client:
        for tool in (await client.list_tools()).tools:
            assert tool.input_schema.get("additionalProperties") is False, tool.name


@pytest.mark.parametrize(
    ("name", "arguments", "said"),
    [
        ("task_run", {"prompt": "hi", "wait_s": "abc"},
         "task_run: 'wait_s' must be a number (got 'abc')"),
        ("task_run", {}, "task_run: 'prompt' is required"),
        ("task_run", {"prompt": "hi", "asks": "yes"},
         "task_run: 'asks' must be one of 'reject', 'approve' or 'leave' (got 'yes')"),
        ("instance_logs", {"name": "oc-1", "lines": 0},
         "instance_logs: 'lines' must be >= 1 (got 0)"),
        ("instances_stop", {"names": "oc-1", "confirm": True},
         "instances_stop: 'names' must be a list (got 'oc-1')"),
        ("instances_start", {"count": "two"},
         "instances_start: 'count' must be a whole number (got 'two')"),
    ],
)  # fmt: skip
async def test_an_argument_error_is_one_line(
    name: str, arguments: dict[str, Any], said: str
) -> None:
    assert await _call(name, arguments) == (True, said)


async def test_errors_name_the_tool_to_call_not_the_cli() -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("instance_get", {"name": "nope"},
         "instance_get: no instance named 'nope'; call instances_list"),
        ("task_get", {"task_id": "t-nope"}, "task_get: no task 't-nope'; call tasks_list"),
        ("batch_get", {"batch_id": "b-nope"}, "batch_get: no batch 'b-nope'; call batches_list"),
        ("batch_run", {"tasks": [{"prompt": "hi"}]},
         "batch_run: no running instance for the batch; start some with instances_start"),
        ("instances_start", {"directory": "/definitely/missing"},
         "instances_start: `directory` /definitely/missing: no such directory"),
    ]  # fmt: skip
    for name, arguments, said in cases:
        assert await _call(name, arguments) == (True, said)
    async with Client(build_server(_settings())) as client:
        with pytest.raises(MCPError) as caught:
            await client.read_resource("ocm://instances/nope")
    assert str(caught.value) == "no instance named 'nope'; call instances_list"


async def test_descriptions_are_plain_text() -> None:
    """No docstring indentation or line breaks in the middle of a sentence."""
    async with Client(build_server(_settings())) as client:
        tools = (await client.list_tools()).tools
        templates = (await client.list_resource_templates()).resource_templates
    texts = [(t.name, t.description or "") for t in tools]
    texts += [(f"{t.name}.{key}", str(prop.get("description", "")))
              for t in tools for key, prop in t.input_schema["properties"].items()]  # fmt: skip
    texts += [(t.name, t.description or "") for t in templates]
    assert len(texts) > 60
    for where, text in texts:
        assert "\n" not in text, (where, text)
        assert "  " not in text, (where, text)
        assert text == text.strip(), (where, text)


async def test_the_text_copy_is_the_structured_result_once_in_compact_json() -> None:
    async with Client(build_server(_settings())) as client:
        result = await client.call_tool("fleet_status", {})
    [block] = result.content
    text = getattr(block, "text", "")
    assert json.loads(text) == result.structured_content
    assert text == json.dumps(result.structured_content, separators=(",", ":"))


@pytest.mark.integration
async def test_ocm_mcp_over_stdio_runs_a_fleet(model_env: list[str], tmp_path: Path) -> None:
    """The SDK's client spawns `ocm mcp` with its own OCM_HOME, as an agent's host would."""
    env = {**os.environ}
    config = next(item for item in model_env if item.startswith("OPENCODE_CONFIG_CONTENT="))
    env["OPENCODE_CONFIG_CONTENT"] = config.split("=", 1)[1]  # inherited by the servers
    env["OPENCODE_DISABLE_MODELS_FETCH"] = "1"
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "opencode_manager", "mcp"], env=env,
        cwd=str(tmp_path),
    )  # fmt: skip
    async with Client(params) as client:
        started = await client.call_tool("instances_start", {"count": 2})
        assert not started.is_error, started.content
        names = [i["name"] for i in started.structured_content["instances"]]
        assert names == ["oc-1", "oc-2"]
        ran = await client.call_tool("task_run", {"prompt": "hello over mcp", "instance": "oc-2"})
        assert not ran.is_error, ran.content
        outcome = ran.structured_content
        assert outcome["done"] is True
        assert outcome["record"]["text"] == "Scripted reply. You said: hello over mcp"
        got = await client.call_tool("task_get", {"task_id": outcome["task_id"]})
        assert got.structured_content["status"] == "completed"
        as_resource = await client.read_resource(f"ocm://tasks/{outcome['task_id']}")
        assert json.loads(getattr(as_resource.contents[0], "text", ""))["status"] == "completed"
        assert got.structured_content["instance"] == "oc-2"
        session = await client.call_tool(
            "session_get", {"session_id": got.structured_content["session_id"], "limit": 1}
        )
        assert not session.is_error, session.content
        assert session.structured_content["total_messages"] >= 2
        assert len(session.structured_content["messages"]) == 1
        batch = await client.call_tool(
            "batch_run", {"tasks": [{"prompt": "one"}, {"prompt": "BASH: echo two"}]}
        )
        assert not batch.is_error, batch.content
        batch_id = batch.structured_content["batch_id"]

        async def batch_done() -> dict[str, Any]:
            while True:
                shown = await client.call_tool("batch_get", {"batch_id": batch_id})
                if shown.structured_content["status"] in ("completed", "cancelled"):
                    return dict(shown.structured_content)
                await anyio.sleep(0.2)  # polling the batch, under the deadline below

        with anyio.fail_after(120):
            finished = await batch_done()
        assert finished["counts"] == {"completed": 2}
        before = (await client.call_tool("instance_get", {"name": "oc-1"})).structured_content
        restarted = await client.call_tool("instance_restart", {"name": "oc-1", "confirm": True})
        assert not restarted.is_error, restarted.content
        [again] = restarted.structured_content["instances"]
        assert (again["name"], again["status"]) == ("oc-1", "running")
        assert again["pid"] != before["pid"]
        stopped = await client.call_tool("instances_stop", {"names": names, "confirm": True})
        assert not stopped.is_error, stopped.content
        assert json.dumps(stopped.structured_content).count('"stopped"') >= 2


@pytest.mark.integration
async def test_asks_left_for_the_caller_and_progress_while_waiting(fleet: Fleet) -> None:
    """A task run with `asks: "leave"` hands its question to the calling agent, which
    answers it; `task_wait` reports progress while it waits."""
    settings = Settings.load(home=Path(fleet.env["OCM_HOME"]))
    async with Client(build_server(settings)) as client:
        ran = await client.call_tool(
            "task_run",
            {"prompt": f"QUESTION {uuid.uuid4().hex[:8]}", "instance": "oc-2", "asks": "leave"},
        )
        assert not ran.is_error, ran.content
        outcome = ran.structured_content
        assert outcome["done"] is False
        [ask] = outcome["asks"]
        assert ask["kind"] == "question"
        assert ask["questions"][0]["options"] == ["Option A", "Option B"]
        session_id = outcome["record"]["session_id"]
        shown = await client.call_tool("session_get", {"session_id": session_id})
        assert [a["id"] for a in shown.structured_content["asks"]] == [ask["id"]]
        wrong = await client.call_tool(
            "session_permission_reply",
            {"session_id": session_id, "permission_id": "per_nope", "reply": "once"},
        )
        assert wrong.is_error
        answered = await client.call_tool(
            "session_question_answer",
            {"session_id": session_id, "question_id": ask["id"], "answers": [["Option A"]]},
        )
        assert not answered.is_error, answered.content
        waited = await client.call_tool("task_wait", {"task_id": outcome["task_id"]})
        assert waited.structured_content["done"] is True, waited.structured_content
        record = waited.structured_content["record"]
        assert record["status"] == "completed"
        assert "Option A" in record["text"]
        # Answered through ocm while nobody followed the task: the record says how.
        assert [(a["id"], a["answer"]) for a in record["asks"]] == [
            (ask["id"], "answered: Option A")
        ]

        notes: list[tuple[float, float | None, str | None]] = []

        async def note(progress: float, total: float | None, message: str | None) -> None:
            notes.append((progress, total, message))

        slow = await client.call_tool(
            "task_run", {"prompt": f"SLEEP 4 {uuid.uuid4().hex[:8]}", "wait_s": 0}
        )
        task_id = slow.structured_content["task_id"]
        waited = await client.call_tool(
            "task_wait", {"task_id": task_id, "wait_s": 40}, progress_callback=note
        )
        assert waited.structured_content["done"] is True
        assert notes, "no progress notification while waiting"
        assert all(total == 40 for _, total, _ in notes)
        assert task_id in str(notes[0][2])


@pytest.mark.integration
async def test_one_stdio_session_writes_nothing_to_stderr(fleet: Fleet, tmp_path: Path) -> None:
    """The SDK logged every call at INFO and httpx every request to an instance (79 lines in
    one session): at the default `--log-level` (warning), stderr stays empty."""

    async def session(*options: str) -> str:
        errlog = tmp_path / f"stderr{len(options)}.txt"
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "opencode_manager", "mcp", *options],
            env=fleet.env, cwd=str(tmp_path),
        )  # fmt: skip
        with errlog.open("w") as sink:
            async with Client(stdio_client(params, errlog=sink)) as client:
                for name, arguments in [
                    ("fleet_status", {}), ("instances_list", {}),
                    ("instance_get", {"name": "oc-1"}), ("sessions_list", {}),
                    ("task_run", {"prompt": "hi", "dir": "/etc"}),
                    ("instance_get", {"name": "nope"}),
                ]:  # fmt: skip
                    await client.call_tool(name, arguments)
        return errlog.read_text()

    assert await session() == ""
    chatty = await session("--log-level", "info")
    assert "HTTP Request" in chatty  # what the default keeps quiet
    assert "rejected arguments" in chatty
