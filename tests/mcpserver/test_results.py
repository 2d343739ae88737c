"""The tools' result types (`mcpserver/results.py`) against what the tools really return: the
keys each public type's `to_dict()` produces, values that pass the SDK's validation unchanged,
and keys nobody declared that still reach the client."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer
from pydantic import TypeAdapter

from opencode_manager import (
    BatchStatus,
    BatchSummary,
    FleetFrame,
    FleetRow,
    FleetTotals,
    InstanceInfo,
    LifecycleEvent,
    Manager,
    PendingAsk,
    Session,
    SessionCounts,
    SessionRow,
    Settings,
    State,
    Status,
    StatusReport,
    StopResult,
    TaskOutcome,
    TaskRecord,
    TaskStatus,
)
from opencode_manager.mcpserver import records, results
from opencode_manager.mcpserver.tools import build_server

from conftest import Fleet

EVENT = LifecycleEvent("oc-1", 1_700_000_000.5, "started", "pid 42", id=7)
INFO = InstanceInfo(
    name="oc-1", status=Status.RUNNING, managed=True, pid=42, port=4096,
    url="http://127.0.0.1:4096", hostname="127.0.0.1", version="1.2.3", healthy=True,
    started_at=1_700_000_000.5, uptime_s=12.5, restarts=1, rss_bytes=123_456, cpu_percent=2.5,
    log="/tmp/oc-1.log", dir="/work", auth=True, keeper_pid=41, supervised=True,
    keeper_answering=True, keeper_error=None, error=None, last_exit="exit code 1",
)  # fmt: skip
RECORD = TaskRecord(
    id="t-1", prompt="hi", status=TaskStatus.FAILED, created_at=1_700_000_000.0, batch_id="b-1",
    instance="oc-1", session_id="ses_1", timeout=60, text="partial", steps=2,
    tool_calls=[{"tool": "bash", "input": {"command": "ls"}}], todos=[{"content": "x"}],
    diff=[{"file": "a.py"}], tokens={"input": 10, "cache": {"read": 1}}, cost=0.01,
    error={"name": "APIError", "message": "boom"}, asks=[{"kind": "question"}],
    started_at=1_700_000_001.0, finished_at=1_700_000_003.5, worktree={"path": "/wt"},
    schema={"type": "object"}, structured={"ok": False},
)  # fmt: skip
SESSION = SessionRow(
    "oc-1",
    Session.from_json({"id": "ses_1", "title": "hello", "directory": "/work",
                       "time": {"created": 1_700_000_000_000, "updated": 1_700_000_001_000}}),
    "busy",
)  # fmt: skip
PERMISSION = PendingAsk("oc-1", "permission", "per_1", "ses_1",
                        {"permission": "bash", "patterns": ["ls *"]})  # fmt: skip
QUESTION = PendingAsk(
    "oc-1", "question", "que_1", "ses_1",
    {"questions": [{"question": "Which?", "header": "Pick", "multiple": False,
                    "options": [{"label": "A"}, {"label": "B"}]}]},
)  # fmt: skip
BATCH = BatchSummary(
    id="b-1", status=BatchStatus.COMPLETED, source="tasks.jsonl", created_at=1_700_000_000.0,
    finished_at=1_700_000_010.0, total=1, done=1, counts={"completed": 1}, duration_s=10.0,
    tasks=[TaskOutcome(id="one", task="t-1", status="completed", instance="oc-1",
                       duration_s=9.5, error=None)],
)  # fmt: skip
FRAME = FleetFrame(
    instances=[FleetRow(name="oc-1", status="running", pid=42, uptime_s=12.5, restarts=0,
                        cpu_percent=1.5, rss_bytes=1000, connections=2, busy=1, idle=0,
                        sessions=1, last_event=EVENT)],
    totals=FleetTotals(instances=1, running=1, cpu_percent=1.5, rss_bytes=1000, busy=1,
                       sessions=1),
)  # fmt: skip
REPORT = StatusReport(
    info=INFO, created_at=1_699_999_999.0, events=[EVENT], recent_errors=["ERROR x"],
    processes=[{"pid": 42, "rss_bytes": 1000, "cmd": "opencode serve"}],
    connections={"ESTABLISHED": 2}, sessions=SessionCounts(1, 1, 0, ["ses_1"]),
    mcp={"fs": {"status": "connected"}}, lsp=[], api_errors=[], settings={"port": 4096},
)  # fmt: skip


def _keys(shape: Any) -> set[str]:
    return set(shape.__required_keys__ | shape.__optional_keys__)


# (result type, what the tools put in it): every record a public type's `to_dict()` makes,
# compacted by `records`
SAMPLES: list[tuple[Any, dict[str, Any]]] = [
    (results.LifecycleEvent, dict(records.event(EVENT))),
    (results.LifecycleEvent, dict(records.event(EVENT, nested=True))),
    (results.InstanceInfo, dict(records.instance(INFO))),
    (results.InstanceDetail, dict(records.instance_detail(REPORT))),
    (results.TaskRecord, dict(records.task(RECORD))),
    (results.TaskRecord, dict(records.task(RECORD, with_id=False))),
    (results.SessionRow, dict(records.session(SESSION))),
    (results.SessionRow, dict(records.session(SESSION, raw=True))),
    (results.PendingAsk, dict(records.ask(PERMISSION))),
    (results.PendingAsk, dict(records.ask(QUESTION))),
    (results.BatchSummary, dict(records.batch(BATCH))),
    (results.BatchBrief, dict(records.batch_brief(BATCH))),
    (results.TaskOutcome, dict(records.batch(BATCH)["tasks"][0])),
    (results.FleetFrame, dict(records.fleet_frame(FRAME))),
    (results.FleetRow, dict(records.fleet_frame(FRAME)["instances"][0])),
    (results.FleetTotals, dict(records.fleet_frame(FRAME)["totals"])),
    (results.SessionCounts, dict(records.instance_detail(REPORT)["sessions"])),
    (results.AskQuestion, dict(records.ask(QUESTION)["questions"][0])),
    (
        results.StopResult,
        dict(records.stop(StopResult("oc-1", State.RUNNING, State.STOPPED, port_freed=True))),
    ),
    (results.TaskBrief, dict(records.task_brief(RECORD))),
]

# (result type, the full `to_dict()`, the keys the compact record never has)
FULL: list[tuple[Any, dict[str, Any], set[str]]] = [
    (results.LifecycleEvent, EVENT.to_dict() | {"id": 7}, {"time", "kind"}),
    (results.InstanceInfo, INFO.to_dict(), {"dir"}),
    (results.InstanceDetail, REPORT.to_dict(), {"dir"}),
    (results.TaskRecord, RECORD.to_dict(), set()),
    (results.SessionRow, SESSION.to_dict(), {"created", "updated"}),
    (results.PendingAsk, PERMISSION.to_dict() | QUESTION.to_dict(), set()),
    (results.BatchSummary, BATCH.to_dict(), set()),
    (results.BatchBrief, BATCH.to_dict(with_tasks=False), set()),
    (results.TaskOutcome, BATCH.to_dict()["tasks"][0], set()),
    (results.FleetFrame, FRAME.to_dict(), set()),
    (results.FleetRow, FRAME.to_dict()["instances"][0], set()),
    (results.FleetTotals, FRAME.to_dict()["totals"], set()),
    (results.SessionCounts, REPORT.to_dict()["sessions"], set()),
    (results.AskQuestion, QUESTION.to_dict()["questions"][0], set()),
    (results.StopResult, StopResult("oc-1", State.RUNNING, State.STOPPED).to_dict(), set()),
]


@pytest.mark.parametrize(("shape", "data"), SAMPLES, ids=lambda v: getattr(v, "__name__", None))
def test_a_compact_record_has_its_required_keys_and_only_declared_ones(
    shape: Any, data: dict[str, Any]
) -> None:
    assert shape.__required_keys__ <= data.keys() <= _keys(shape)


@pytest.mark.parametrize(
    ("shape", "data", "older"), FULL, ids=lambda v: getattr(v, "__name__", None)
)
def test_a_result_type_declares_every_key_to_dict_makes_but_the_older_names(
    shape: Any, data: dict[str, Any], older: set[str]
) -> None:
    """The schema cannot drift from the public types: a key `to_dict()` grows must be declared
    (or knowingly left out as an older name)."""
    assert _keys(shape) == data.keys() - older


@pytest.mark.parametrize(("shape", "data"), SAMPLES, ids=lambda v: getattr(v, "__name__", None))
def test_each_fact_once_and_no_null_or_empty_values(shape: Any, data: dict[str, Any]) -> None:
    assert not {"time", "kind"} <= data.keys()
    assert not {"created", "created_at"} <= data.keys()
    assert not {"dir", "directory"} <= data.keys()
    for key, value in data.items():
        assert value not in (None, [], {}, ""), (shape.__name__, key)


def test_a_record_says_what_its_parent_does_not() -> None:
    """A nested event leaves out its instance, a task in a handle its id, a session its
    raw OpenCode object unless asked, an instance its last event when `events` ends with it."""
    assert "instance" not in records.fleet_frame(FRAME)["instances"][0]["last_event"]
    assert records.event(EVENT)["instance"] == "oc-1"
    detail = records.instance_detail(REPORT)
    assert [e.get("instance") for e in detail["events"]] == [None]
    assert "last_event" not in detail
    assert "id" not in records.task(RECORD, with_id=False)
    assert "raw" not in records.session(SESSION)
    assert records.session(SESSION, raw=True)["raw"]["title"] == "hello"
    assert "task_id" not in records.task(RECORD)  # null: no batch file gave it an id
    assert "pinned" not in records.task(RECORD)


def test_every_key_of_a_kind_dependent_record_is_declared() -> None:
    both = PERMISSION.to_dict().keys() | QUESTION.to_dict().keys()
    assert both == _keys(results.PendingAsk)


def test_the_brief_task_is_the_record_in_part() -> None:
    full = records.task(RECORD)
    brief = records.task_brief(RECORD)
    assert dict(brief) == {key: full[key] for key in brief}  # type: ignore[literal-required]
    assert brief.keys() <= _keys(results.TaskBrief)


@pytest.mark.parametrize(("shape", "data"), SAMPLES, ids=lambda v: getattr(v, "__name__", None))
def test_the_values_pass_validation_unchanged(shape: Any, data: dict[str, Any]) -> None:
    """The SDK validates and dumps every result through its type: a type too narrow for a
    value would fail the call, a coercion would change the answer."""
    adapter = TypeAdapter(shape)
    assert adapter.dump_python(adapter.validate_python(data), mode="json") == data


def test_the_task_totals_fit_their_type() -> None:
    with Manager(Settings.load(home=Path(os.environ["OCM_HOME"]))) as manager:
        totals = manager.task_totals()
    assert totals.keys() == _keys(results.TaskTotals)
    adapter = TypeAdapter(results.TaskTotals)
    assert adapter.dump_python(adapter.validate_python(totals), mode="json") == totals


@pytest.mark.anyio
async def test_keys_nobody_declared_still_reach_the_client() -> None:
    """A plain TypedDict makes the SDK drop undeclared keys; ours are open, nested too."""
    server = MCPServer("probe")
    wait = {"done": True, "task_id": "t-1", "record": dict(records.task(RECORD)) | {"new_key": [1]},
            "later": "kept"}  # fmt: skip

    @server.tool()
    async def probe() -> results.TaskHandle:
        return wait  # type: ignore[return-value]  # the undeclared keys are the point

    async with Client(server) as client:
        result = await client.call_tool("probe", {})
    assert not result.is_error, result.content
    assert result.structured_content == wait


@pytest.mark.anyio
async def test_every_tool_has_a_typed_output_schema() -> None:
    """Each tool's outputSchema lists its keys (not an open `object`), each described, and
    every nested record type is open to keys added later."""
    async with Client(build_server(Settings.load(home=Path(os.environ["OCM_HOME"])))) as client:
        tools = (await client.list_tools()).tools
    assert len(tools) == 22
    for tool in tools:
        schema = tool.output_schema
        assert schema is not None, tool.name
        assert schema.get("type") == "object", tool.name
        assert schema.get("properties"), tool.name
        assert schema.get("description"), tool.name
        for shape in [schema, *schema.get("$defs", {}).values()]:
            assert shape.get("additionalProperties") is True, (tool.name, shape.get("title"))
            for key, prop in shape["properties"].items():
                assert prop.get("description"), (tool.name, shape.get("title"), key)


@pytest.mark.anyio
async def test_an_instance_in_detail_fits_its_schema(fleet: Fleet) -> None:
    """The largest result, with real values (test_tools_on_a_fleet has the other reads): the
    SDK validates it on the server, its client checks it against the `outputSchema`."""
    settings = Settings.load(home=Path(fleet.env["OCM_HOME"]))
    async with Client(build_server(settings, read_only=True)) as client:
        listed = await client.call_tool("instances_list", {})
        shown = await client.call_tool("instance_get", {"name": "oc-1"})
    assert not listed.is_error, listed.content
    assert not shown.is_error, shown.content
    assert shown.structured_content is not None
    assert shown.structured_content["status"] == "running"
    assert shown.structured_content["events"], "a running instance has lifecycle events"
    assert shown.structured_content["sessions"] is not None
