"""A real MCP client nobody here wrote: OpenCode itself runs `ocm mcp` as a local MCP server,
and its agent (the scripted model's CALL keyword) drives the fleet through ocm's tools."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import pytest

from helpers import invoke_ocm, wait_for

pytestmark = pytest.mark.integration


def test_an_opencode_agent_runs_a_task_on_another_instance_through_ocm_mcp(
    model_env: list[str], tmp_path: Path
) -> None:
    project = tmp_path / "a"
    project.mkdir()
    ocm_server = {
        "type": "local",
        "command": [sys.executable, "-m", "opencode_manager", "mcp"],
        "environment": {"OCM_HOME": os.environ["OCM_HOME"]},
        "timeout": 60000,  # task_run waits for its answer; OpenCode's default is 5 s
    }
    (project / "opencode.json").write_text(json.dumps({"mcp": {"ocm": ocm_server}}))
    env_args = [arg for item in model_env for arg in ("--env", item)]
    invoke_ocm("start", "b", "--dir", str(tmp_path), *env_args, check=True)
    invoke_ocm("start", "a", "--dir", str(project), *env_args, check=True)
    try:

        def connected() -> bool:
            found = invoke_ocm("api", "a", "GET", "/mcp", "--dir", str(project), check=True)
            return bool(found.json().get("ocm", {}).get("status") == "connected")

        wait_for(connected, timeout=60, message="OpenCode a connected to ocm mcp")
        tag = uuid.uuid4().hex[:8]
        ask_b = json.dumps({"prompt": f"hello from a {tag}", "instance": "b", "wait_s": 40})
        prompt = f"CALL ocm_instances_list {{}}\nCALL ocm_task_run {ask_b}"
        result = invoke_ocm("run", "-i", "a", prompt, "--json", timeout=180)
        assert result.returncode == 0, str(result)
        record = result.json()
        calls = {c["tool"]: c for c in record["tool_calls"]}
        assert set(calls) == {"ocm_instances_list", "ocm_task_run"}, record["tool_calls"]
        assert all(c["status"] == "completed" for c in calls.values()), record["tool_calls"]
        listed = json.loads(calls["ocm_instances_list"]["output"])
        assert sorted(i["name"] for i in listed["instances"]) == ["a", "b"]
        # What the agent on a received (and said back) holds b's answer.
        answer = f"Scripted reply. You said: hello from a {tag}"
        assert answer in calls["ocm_task_run"]["output"]
        assert answer in record["text"]
        on_b = invoke_ocm("results", "--json", check=True).json()
        [task] = [t for t in on_b if t["prompt"] == f"hello from a {tag}"]
        assert (task["instance"], task["status"], task["text"]) == ("b", "completed", answer)
    finally:
        invoke_ocm("stop", "--all")
