"""The MCP tools the other tests leave out, in memory (the SDK's own client), on the shared
fleet: the reads with their cursors and filters, and abort."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from opencode_manager import Settings
from opencode_manager.mcpserver.tools import build_server

from conftest import Fleet
from helpers import run_ocm

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def _ok(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    assert not result.is_error, (name, result.content)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def test_reads_and_abort_on_a_running_fleet(fleet: Fleet) -> None:
    settings = Settings.load(home=Path(fleet.env["OCM_HOME"]))
    async with Client(build_server(settings)) as client:
        frame = await _ok(client, "fleet_status", {})
        assert frame["totals"]["running"] == 3
        assert {row["name"] for row in frame["instances"]} == {"oc-1", "oc-2", "oc-3"}

        events = await _ok(client, "events_list", {"name": "oc-1", "limit": 500})
        assert any(e["type"] == "healthy" for e in events["events"])
        newer = await _ok(client, "events_list", {"name": "oc-1", "after": events["cursor"]})
        assert newer["events"] == []
        assert newer["cursor"] == events["cursor"]

        logs = await _ok(client, "instance_logs", {"name": "oc-1", "lines": 5})
        assert 0 < len(logs["lines"]) <= 5

        tag = uuid.uuid4().hex[:8]
        done = await _ok(client, "task_run", {"prompt": f"reads {tag}", "instance": "oc-1"})
        assert done["done"] is True
        listed = await _ok(client, "tasks_list", {"status": "completed", "limit": 200})
        assert done["task_id"] in [t["id"] for t in listed["tasks"]]
        metrics = await _ok(client, "metrics_get", {})
        assert metrics["totals"]["instances"] == 3
        assert metrics["tasks"]["tasks"]["completed"] >= 1
        assert metrics["tasks"]["tokens"]["output"] > 0
        sessions = await _ok(client, "sessions_list", {"name": "oc-1"})
        assert done["record"]["session_id"] in [s["id"] for s in sessions["sessions"]]

        slow = await _ok(client, "task_run", {"prompt": f"SLEEP 60 {tag}", "instance": "oc-1",
                                              "wait_s": 0})  # fmt: skip
        assert slow["done"] is False
        task_id = slow["task_id"]

        async def busy() -> None:
            while True:
                shown = await _ok(client, "sessions_list", {"name": "oc-1"})
                if any(s["status"] == "busy" for s in shown["sessions"]):
                    return
                await anyio.sleep(0.2)  # polling the session, under the deadline below

        with anyio.fail_after(90):  # a loaded machine (the Ray test runs beside it) is slow
            await busy()
        refused = await client.call_tool("task_abort", {"task_id": task_id})
        assert refused.is_error
        await _ok(client, "task_abort", {"task_id": task_id, "confirm": True})
        ended = await _ok(client, "task_wait", {"task_id": task_id, "wait_s": 30})
        assert ended["done"] is True
        assert ended["record"]["status"] == "aborted"

        batches = await _ok(client, "batches_list", {})
        assert isinstance(batches["batches"], list)
    # a process of its own: this test runs inside an event loop
    assert run_ocm("result", task_id, "--json", env=fleet.env).json()["status"] == "aborted"


async def test_fleet_status_of_three_is_compact(fleet: Fleet) -> None:
    """Each fact once (no `time` beside `at`, no instance name inside its own row's event),
    nothing null, and the text copy is compact JSON: 1.7 KB of text (2.9 KB on the wire)
    before, under 1.2 KB now."""
    settings = Settings.load(home=Path(fleet.env["OCM_HOME"]))
    async with Client(build_server(settings, read_only=True)) as client:
        result = await client.call_tool("fleet_status", {})
    assert not result.is_error, result.content
    text = getattr(result.content[0], "text", "")
    assert json.loads(text) == result.structured_content
    assert len(text.encode()) < 1200, text
    rows = result.structured_content["instances"]
    assert len(rows) == 3
    for row in rows:
        assert None not in row.values(), row
        assert set(row["last_event"]) <= {"at", "type", "detail"}, row
