"""A real MCP client nobody here wrote: OpenCode itself runs `ocm mcp` as a local MCP server,
configured as `ocm mcp --help` shows, and its agent (the scripted model's CALL keyword) drives
the fleet through ocm's tools."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.mcpserver.tools import MAX_WAIT_S

from helpers import invoke_ocm, wait_for

pytestmark = pytest.mark.integration


def help_example() -> dict[str, Any]:
    """The opencode.json `ocm mcp --help` shows (the lines after its `# opencode.json`)."""
    shown = invoke_ocm("mcp", "--help", check=True).stdout
    after = shown.split("# opencode.json", 1)[1].split("\n", 1)[1]
    return dict(json.loads(after.split("\n\n", 1)[0]))


def test_the_help_shows_the_timeout_task_run_needs() -> None:
    server = help_example()["mcp"]["ocm"]
    assert server["command"] == ["ocm", "mcp"]
    assert server["timeout"] > MAX_WAIT_S * 1000 + 10_000  # a call ends well inside it


def test_an_opencode_agent_runs_a_task_on_another_instance_through_ocm_mcp(
    model_env: list[str], tmp_path: Path
) -> None:
    project = tmp_path / "a"
    project.mkdir()
    # As the help shows it, with `ocm` on the PATH and this test's OCM_HOME.
    ocm_server = help_example()["mcp"]["ocm"] | {
        "environment": {
            "OCM_HOME": os.environ["OCM_HOME"],
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
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
        misspelt = json.dumps({"prompt": f"never run {tag}", "dir": "/etc"})
        prompt = "\n".join([
            "CALL ocm_instances_list {}",
            f"CALL ocm_task_run {ask_b}",
            f"CALL! ocm_task_run {misspelt}",
            'CALL! ocm_task_run {"prompt": "x1", "wait_s": "abc"}',
            'CALL! ocm_instance_get {"name": "nope"}',
        ])  # fmt: skip
        result = invoke_ocm("run", "-i", "a", prompt, "--json", timeout=180)
        assert result.returncode == 0, str(result)
        record = result.json()
        calls = record["tool_calls"]
        assert [c["tool"] for c in calls] == ["ocm_instances_list", *["ocm_task_run"] * 3,
                                              "ocm_instance_get"], calls  # fmt: skip
        listed, ran, *refused = calls
        assert listed["status"] == ran["status"] == "completed", calls
        names = json.loads(listed["output"])["instances"]
        assert sorted(i["name"] for i in names) == ["a", "b"]
        # What the agent on a received (and said back) holds b's answer.
        answer = f"Scripted reply. You said: hello from a {tag}"
        assert answer in ran["output"]
        assert answer in record["text"]
        # OpenCode passes arguments as the model wrote them: each mistake comes back to the
        # agent as the tool's error, one line it can act on.
        assert [(c["status"], c["error"]) for c in refused] == [
            ("error", "task_run: unknown argument 'dir' (did you mean 'directory'?); "
                      "task_run takes: prompt, instance, directory, wait_s, asks, model, "
                          "max_cost, max_tokens, recover, fallback, key"),
            ("error", "task_run: 'wait_s' must be a number (got 'abc')"),
            ("error", "instance_get: no instance named 'nope'; call instances_list"),
        ]  # fmt: skip
        on_b = invoke_ocm("results", "--json", check=True).json()
        [task] = [t for t in on_b if t["prompt"] == f"hello from a {tag}"]
        assert (task["instance"], task["status"], task["text"]) == ("b", "completed", answer)
        assert not [t for t in on_b if t["prompt"] == f"never run {tag}"]
    finally:
        invoke_ocm("stop", "--all")
