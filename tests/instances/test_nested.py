"""Integration: instances that an agent starts from inside another instance (issue 23).

An agent's bash tool running `ocm start b`, or OpenCode's own `ocm mcp` calling
instances_start: b's keeper double-forks, and Linux re-parents it to the nearest child
subreaper, which is the parent instance's keeper. Crashing, recycling, restarting or stopping
the parent must not touch b: same keeper, same server, still running.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from helpers import run_ocm, wait_for

pytestmark = pytest.mark.integration


def _row(name: str) -> dict[str, Any]:
    rows = run_ocm("ls", "--json", "--no-foreign", check=True).json()
    return next(dict(r) for r in rows if r["name"] == name)


def _pids(name: str) -> tuple[int, int]:
    row = _row(name)
    return row["keeper_pid"], row["pid"]


def _running_again(name: str, old_server: int) -> int:
    """Wait until `name` runs a server other than `old_server`; its PID."""

    def fresh() -> int | None:
        row = _row(name)
        pid = row["pid"]
        return int(pid) if row["status"] == "running" and pid and pid != old_server else None

    found = wait_for(fresh, timeout=90, message=f"{name} running a new server")
    assert isinstance(found, int)
    return found


def _assert_untouched(name: str, keeper: int, server: int, after: str) -> None:
    row = _row(name)
    assert (row["status"], row["keeper_pid"], row["pid"]) == ("running", keeper, server), (
        f"{name} after {after}: {row}"
    )
    for pid in (keeper, server):
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    events = run_ocm("events", name, "--json", check=True).json()
    assert [e for e in events if e["type"] in ("stopped", "crashed")] == [], events


def _recycles(name: str) -> int:
    events = run_ocm("events", name, "--json", check=True).json()
    return sum(1 for e in events if e["type"] == "recycled")


def _stop(*names: str) -> None:
    for name in names:
        run_ocm("stop", name)


def test_an_instance_started_by_an_agents_bash_tool_outlives_its_parent(
    model_env: list[str], tmp_path: Path
) -> None:
    """`ocm start b` in a's bash tool; then a's server is killed (-9), a is recycled (max age)
    and restarted: b keeps its keeper and server through all three."""
    env_args = [arg for item in model_env for arg in ("--env", item)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run_ocm("start", "a", "--dir", str(tmp_path / "a"), "--max-age", "15s", *env_args, check=True)
    try:
        # A server's environment has no OCM_* variables (ocm keeps them to itself): the agent
        # says which ocm home and binary it means. The scripted model is in the environment
        # it inherits from a (OPENCODE_CONFIG_CONTENT), and so reaches b.
        ocm = (
            f"OCM_HOME={shlex.quote(os.environ['OCM_HOME'])} "
            f"OCM_OPENCODE={shlex.quote(os.environ['OCM_OPENCODE'])} "
            f"{shlex.quote(sys.executable)} -m opencode_manager"
        )
        command = f"{ocm} start b --dir {shlex.quote(str(tmp_path / 'b'))}"
        # The run's own result is not the point: a may be recycled as its turn ends.
        run_ocm("run", "-i", "a", f"BASH: {command}", "--timeout", "120", timeout=180)
        wait_for(lambda: _row("b")["status"] == "running", timeout=60, message="b running")
        keeper, server = _pids("b")
        a_keeper, a_server = _pids("a")
        assert psutil.Process(keeper).ppid() == a_keeper  # adopted by a's keeper: the trap

        recycles = _recycles("a")  # a may have been recycled already, as its turn ended
        os.kill(a_server, signal.SIGKILL)  # a's server crashes: its keeper ends its orphans
        a_server = _running_again("a", a_server)
        _assert_untouched("b", keeper, server, "a's crash")

        wait_for(lambda: _recycles("a") > recycles, timeout=90, message="a recycled (max age)")
        _running_again("a", a_server)
        _assert_untouched("b", keeper, server, "a's recycle")

        run_ocm("restart", "a", check=True)
        _assert_untouched("b", keeper, server, "a's restart")
        [stopped] = run_ocm("stop", "b", "--json", check=True).json()
        assert stopped["via"] == "keeper"  # b's keeper still supervised its server
    finally:
        _stop("b", "a")


def test_an_instance_started_through_ocm_mcp_outlives_its_parents_stop(
    model_env: list[str], tmp_path: Path
) -> None:
    """OpenCode runs `ocm mcp` (a's opencode.json); its agent calls ocm_instances_start for
    b; `ocm stop a` leaves b running."""
    project = tmp_path / "a"
    project.mkdir()
    (tmp_path / "b").mkdir()
    ocm_server = {
        "type": "local",
        "command": [sys.executable, "-m", "opencode_manager", "mcp"],
        "environment": {
            "OCM_HOME": os.environ["OCM_HOME"],
            "OCM_OPENCODE": os.environ["OCM_OPENCODE"],
        },
        "timeout": 120000,  # instances_start waits for b's health; OpenCode's default is 5 s
    }
    (project / "opencode.json").write_text(json.dumps({"mcp": {"ocm": ocm_server}}))
    env_args = [arg for item in model_env for arg in ("--env", item)]
    run_ocm("start", "a", "--dir", str(project), *env_args, check=True)
    try:

        def connected() -> bool:
            found = run_ocm("api", "a", "GET", "/mcp", "--dir", str(project), check=True)
            return bool(found.json().get("ocm", {}).get("status") == "connected")

        wait_for(connected, timeout=60, message="OpenCode a connected to ocm mcp")
        start_b = json.dumps({"name": "b", "directory": str(tmp_path / "b")})
        result = run_ocm("run", "-i", "a", f"CALL ocm_instances_start {start_b}", "--json")
        assert result.returncode == 0, str(result)
        [call] = result.json()["tool_calls"]
        assert (call["tool"], call["status"]) == ("ocm_instances_start", "completed"), call
        keeper, server = _pids("b")
        a_keeper, _ = _pids("a")
        assert psutil.Process(keeper).ppid() == a_keeper  # adopted by a's keeper: the trap

        run_ocm("stop", "a", check=True)
        _assert_untouched("b", keeper, server, "a's stop")
        [stopped] = run_ocm("stop", "b", "--json", check=True).json()
        assert stopped["via"] == "keeper"
    finally:
        _stop("b", "a")
