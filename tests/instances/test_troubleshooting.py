"""Troubleshooting tells the cause: a project config OpenCode cannot parse, an MCP server that
cannot start. Neither stops the server answering health, so ocm must look further."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opencode_manager.instances.fleet import Fleet as RegistryFleet
from opencode_manager.models import InstanceSpec, ProcessIdentity

from helpers import Result, invoke_ocm

pytestmark = pytest.mark.integration

BROKEN_JSON = '{"mcp": {"broken": {"type": "local", "command": ["/nonexistent/mcp"]}},\n'
BAD_MCP = '{"mcp": {"broken": {"type": "local", "command": ["/nonexistent/mcp"]}}}\n'


def _doctor_warnings() -> list[dict[str, object]]:
    result = invoke_ocm("doctor", "--json")
    assert result.returncode == 0, str(result)  # warnings do not fail doctor
    return [c for c in result.json()["checks"] if not c["ok"]]


def test_a_broken_project_config_and_a_failed_mcp_server_are_shown_with_the_fix(
    tmp_path: Path, model_env: list[str]
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    config = project / "opencode.json"
    config.write_text(BROKEN_JSON)
    env_args = [arg for item in model_env for arg in ("--env", item)]
    # Warmed (conftest turns it off): a start checks the project only where it warms it.
    started = invoke_ocm(
        "start", "proj", "--dir", str(project), "--json", *env_args,
        env={"OCM_WARMUP_TIMEOUT": "120"},
    )  # fmt: skip
    try:
        _check(started, project)
    finally:
        invoke_ocm("stop", "--all")


def _check(started: Result, project: Path) -> None:
    config = project / "opencode.json"
    assert started.returncode == 0, str(started)
    assert json.loads(started.stdout)[0]["status"] == "running"
    warning = f"ConfigJsonError in {config}: PropertyNameExpected at line 2, column 1"
    [line] = [x for x in started.stderr.splitlines() if x.startswith("warning: proj:")]
    assert warning in line
    assert "`ocm restart proj`" in line

    status = invoke_ocm("status", "proj", check=True).stdout
    api_lines = [x for x in status.splitlines() if x.startswith("api error")]
    assert len(api_lines) == 1, status  # one cause, said once
    assert warning in api_lines[0]
    assert json.loads(invoke_ocm("status", "proj", "--json", check=True).stdout)["api_errors"]
    [found] = _doctor_warnings()
    assert found["level"] == "warning"
    assert warning in str(found["detail"])

    config.write_text(BAD_MCP)
    restarted = invoke_ocm("restart", "proj", check=True)
    assert "warning" not in restarted.stderr
    status = invoke_ocm("status", "proj", check=True).stdout
    [mcp] = [x for x in status.splitlines() if x.startswith("mcp")]
    assert "broken: failed (" in mcp, status
    assert "ENOENT" in mcp, status
    [found] = _doctor_warnings()
    assert "MCP server broken failed: " in str(found["detail"])
    assert "ENOENT" in str(found["detail"])
    assert "mcp.broken" in str(found["fix"])


def test_doctor_names_no_cause_as_such_never_as_none(home_fleet: RegistryFleet) -> None:
    """A row that says running whose processes are gone, with nothing recorded about why (its
    keeper could not write it): doctor says so, not `crashed: None`."""
    registry = home_fleet.registry
    with registry.transaction() as db:
        registry.reserve(db, InstanceSpec(name="gone", dir="/p"), port=None)
    registry.server_spawned("gone", ProcessIdentity(4_000_123, 1.0, "serve"))  # long dead
    registry.mark_running("gone", url="http://127.0.0.1:9", port=9, version="1.18.33")
    result = invoke_ocm("doctor", "--json")
    [check] = [c for c in result.json()["checks"] if c["name"] == "instance gone"]
    assert check["detail"].startswith("crashed: its processes are gone"), check
    assert "None" not in check["detail"]
