"""Integration: `ocm up` / `diff` / `down` converge real servers to a fleet file."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.scripted_model import ScriptedModelServer, opencode_config

from helpers import assert_one_line_error, invoke_ocm

pytestmark = pytest.mark.integration


def _toml(value: Any) -> str:
    """A value as TOML (inline tables for dicts)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "true" if value is True else "false" if value is False else json.dumps(value)


def _fleet_file(project: Path, model: ScriptedModelServer, queue: str, group: bool = True) -> None:
    config = _toml(opencode_config(model.base_url))
    text = f"""\
[project]
name = "converge"

[defaults]
env = {{ OPENCODE_DISABLE_MODELS_FETCH = "1", npm_config_fetch_retries = "0" }}
config = {config}

[instance.web]
health_interval = "1s"
"""
    if group:
        text += f"""
[group.worker]
count = 2
health_interval = "1s"
env = {{ QUEUE = "{queue}" }}
"""
    (project / "ocm.toml").write_text(text)


def _changes(project: Path) -> dict[str, tuple[str, list[str]]]:
    found = invoke_ocm("diff", "--json", cwd=str(project), check=True).json()
    return {c["name"]: (c["action"], c["keys"]) for c in found["changes"]}


def _events(name: str) -> list[dict[str, Any]]:
    found = invoke_ocm("events", name, "--json", check=True).json()
    assert isinstance(found, list)
    return found


def test_up_diff_down_converge_and_touch_nothing_else(
    model: ScriptedModelServer, tmp_path: Path
) -> None:
    project = tmp_path / "fleet"
    project.mkdir()
    _fleet_file(project, model, "a")
    invoke_ocm("start", "byhand", "--env", "npm_config_fetch_retries=0", check=True)
    hand = invoke_ocm("ls", "--json", "--no-foreign", check=True).json()[0]
    try:
        up = invoke_ocm("up", "--json", cwd=str(project), check=True).json()
        assert sorted(up["done"]) == ["web", "worker-1", "worker-2"]
        assert all(change == ("unchanged", []) for change in _changes(project).values())
        again = invoke_ocm("up", "--json", cwd=str(project), check=True).json()
        assert again["done"] == []  # a second `up` does nothing

        _fleet_file(project, model, "b")  # an env value of the group changes
        assert _changes(project) == {
            "web": ("unchanged", []),
            "worker-1": ("recreate", ["env.QUEUE"]),
            "worker-2": ("recreate", ["env.QUEUE"]),
        }
        web_pid = invoke_ocm("status", "web", "--json", check=True).json()["pid"]
        up = invoke_ocm("up", "--json", cwd=str(project), check=True).json()
        assert up["done"] == ["worker-1", "worker-2"]
        # One at a time: worker-1 was healthy again before worker-2 went down.
        back = [e["at"] for e in _events("worker-1") if e["type"] == "healthy"][-1]
        down = [e["at"] for e in _events("worker-2") if e["type"] == "stopped"][-1]
        assert back <= down
        assert invoke_ocm("status", "web", "--json", check=True).json()["pid"] == web_pid
        status = invoke_ocm("status", "worker-2", "--json", check=True).json()
        assert status["settings"]["project"] == "converge"
        environ = Path(f"/proc/{status['pid']}/environ").read_bytes().split(b"\0")
        assert b"QUEUE=b" in environ

        _fleet_file(project, model, "b", group=False)  # the group is removed
        assert _changes(project) == {
            "web": ("unchanged", []),
            "worker-1": ("orphan", []),
            "worker-2": ("orphan", []),
        }
        assert invoke_ocm("up", "--json", cwd=str(project), check=True).json()["done"] == []
        up = invoke_ocm("up", "--remove-orphans", "--json", cwd=str(project), check=True).json()
        assert sorted(up["done"]) == ["worker-1", "worker-2"]
        names = {i["name"]: i for i in invoke_ocm("ls", "--json", "--no-foreign").json()}
        assert set(names) == {"web", "byhand"}

        stopped = invoke_ocm("down", "--json", cwd=str(project), check=True).json()
        assert [s["name"] for s in stopped] == ["web"]
        names = {i["name"]: i for i in invoke_ocm("ls", "--json", "--no-foreign").json()}
        assert names["web"]["status"] == "stopped"
        # The instance started by hand was never touched.
        assert (names["byhand"]["status"], names["byhand"]["pid"]) == ("running", hand["pid"])
        assert _changes(project)["web"] == ("start", [])
    finally:
        invoke_ocm("stop", "--all")


def test_a_fleet_file_naming_a_hand_started_instance_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ocm.toml").write_text('[instance.byhand]\nhealth_interval = "1s"\n')
    invoke_ocm("start", "byhand", "--env", "npm_config_fetch_retries=0", check=True)
    try:
        assert _changes(tmp_path)["byhand"][0] == "conflict"
        result = invoke_ocm("up", cwd=str(tmp_path))
        assert_one_line_error(result, 4, "byhand exists, started by hand")
    finally:
        invoke_ocm("stop", "--all")


def test_a_bad_fleet_file_or_a_taken_port_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "ocm.toml").write_text("[instance.web]\nprot = 1\n\n[group.w]\ncount = 0\n")
    result = invoke_ocm("up", cwd=str(tmp_path))
    assert result.returncode == 2, str(result)
    assert result.stderr.splitlines() == [
        "ocm: error: ocm.toml:2: [instance.web] prot: unknown key (did you mean port?)",
        "ocm: error: ocm.toml:5: [group.w] count: invalid count 0: use 1 to 64",
    ]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "ocm.toml").write_text(f"[instance.a]\n\n[instance.b]\nport = {port}\n")
        result = invoke_ocm("up", cwd=str(tmp_path))
    assert_one_line_error(
        result, 2, f"ocm.toml:4: [instance.b] port: port {port} is already in use"
    )
    assert invoke_ocm("ls", "--json", "--no-foreign", check=True).json() == []
