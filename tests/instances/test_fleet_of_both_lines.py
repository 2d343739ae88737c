"""Integration: what surrounds an instance, on OpenCode 1.18.33 and 2.1.2 side by side (issue
25, items 3 and 5): the credentials a client gets (`ocm env`, `ocm attach` running the TUI of
the instance's line), what the agent's tools inherit, logs, top and metrics, doctor's project
checks, MCP `task_run`, the dashboard, and `ocm save`/`resurrect`/`export systemd` keeping a
2.x instance's binary.

One module fleet (`v1` and `v2`, conftest's `both_lines`) serves every test; the one that
stops and brings back `v2` runs last. What a client of either line sees is parametrized over
both; what only 2.x changes (doctor's project checks, the kept binary) runs on 2.x, where
1.x has its own tests (test_troubleshooting.py, test_dump.py, test_systemd.py).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from starlette.testclient import TestClient

from opencode_manager import Settings
from opencode_manager.dashboard.app import Dashboard

from conftest import Both, both_lines
from helpers import run_ocm, wait_for

pytestmark = pytest.mark.integration

SHELL = {"v1": "bash", "v2": "shell"}
VERSION = {"v1": "1.18.33", "v2": "2.1.2"}


@pytest.fixture(scope="module")
def both(
    tmp_path_factory: pytest.TempPathFactory,
    opencode_bin: str,
    opencode2_bin: str,
    model_env: list[str],
) -> Iterator[Both]:
    base = tmp_path_factory.mktemp("pair")
    with both_lines(base, opencode_bin, opencode2_bin, model_env) as started:
        yield started


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _ocm(both: Both, *args: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
    return run_ocm(*args, env={**both.env, **(env or {})}, **kw)


def _record(both: Both, *args: str) -> dict[str, Any]:
    result = _ocm(both, "run", *args, "--json", timeout=180)
    assert result.returncode == 0, str(result)
    data = result.json()
    assert isinstance(data, dict)
    return data


# -- one contract: the same commands answer the same shape whichever line runs the instance -------
def _shape(value: Any) -> Any:
    """The keys of a JSON answer, nested (lists by their first item); not the values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def test_ls_status_and_run_answer_the_same_json_shape_on_both_lines(both: Both) -> None:
    """Scripts do not care which line runs an instance: `ls`, `status` and a task's record
    have the same keys on 1.x and 2.x (the line and version are values, not a new shape)."""
    rows = _ls(both)
    assert set(rows["v1"]) == set(rows["v2"]), set(rows["v1"]) ^ set(rows["v2"])
    assert (rows["v1"]["line"], rows["v2"]["line"]) == (1, 2)
    reports = {}
    for line in ("v1", "v2"):
        status = _ocm(both, "status", line, "--json")
        assert status.returncode == 0, str(status)
        reports[line] = status.json()
    assert set(reports["v1"]) == set(reports["v2"]), set(reports["v1"]) ^ set(reports["v2"])
    assert _shape(reports["v1"]["settings"]) == _shape(reports["v2"]["settings"])
    records = {
        line: _record(both, "-i", line, f"BASH: echo shape-{_tag()}") for line in ("v1", "v2")
    }
    assert set(records["v1"]) == set(records["v2"]), set(records["v1"]) ^ set(records["v2"])
    calls = {line: records[line]["tool_calls"][0] for line in ("v1", "v2")}
    assert set(calls["v1"]) == set(calls["v2"]), set(calls["v1"]) ^ set(calls["v2"])
    assert (calls["v1"]["tool"], calls["v2"]["tool"]) == ("bash", "shell")
    for line in ("v1", "v2"):
        assert (records[line]["status"], records[line]["instance"]) == ("completed", line)
        assert records[line]["tokens"]["output"] > 0, records[line]["tokens"]


# -- what a client gets --------------------------------------------------------------------------
@pytest.mark.parametrize("line", ["v1", "v2"])
def test_the_agents_tools_never_inherit_the_server_password(both: Both, line: str) -> None:
    """The scrubbing plugin in the form each line loads (2.x: a directory with a default
    export; the 1.x file is refused there, and the shell tool saw the password)."""
    record = _record(both, "-i", line, "BASH: env")
    [call] = record["tool_calls"]
    assert call["tool"] == SHELL[line]
    printed = str(call["output"])
    assert "OCM_INSTANCE_MARK=" in printed  # the environment was printed
    for variable in ("OPENCODE_SERVER_PASSWORD=", "OPENCODE_SERVER_USERNAME=",
                     "OPENCODE_PASSWORD="):  # fmt: skip
        assert variable not in printed, variable
    log = Path(_ls(both)[line]["log"]).read_text()
    assert "configured plugin path must be a directory" not in log  # 2.x took the plugin


def _ls(both: Both) -> dict[str, dict[str, Any]]:
    data = _ocm(both, "ls", "--no-foreign", "--json", check=True).json()
    return {i["name"]: i for i in data}


def test_a_password_left_in_the_callers_shell_does_not_lock_ocm_out_of_2x(
    both: Both, opencode2_bin: str, tmp_path: Path
) -> None:
    """2.x reads OPENCODE_PASSWORD before OPENCODE_SERVER_PASSWORD, and its own client tells
    users to set it: a server that inherited one refused ocm's credentials at start."""
    env = {"OPENCODE_PASSWORD": "left-from-another-server"}
    started = _ocm(both, "start", "stray", "--opencode", opencode2_bin, "--dir", str(tmp_path),
                   "--timeout", "90", "--json", env=env)  # fmt: skip
    try:
        assert started.returncode == 0, str(started)
        assert started.json()[0]["healthy"] is True
    finally:
        _ocm(both, "rm", "--force", "stray")
    refused = _ocm(both, "start", "x", "--env", "OPENCODE_PASSWORD=mine", "--dir", str(tmp_path))
    assert refused.returncode == 2, str(refused)
    assert "--env OPENCODE_PASSWORD is not allowed" in refused.stderr


@pytest.mark.parametrize("line", ["v1", "v2"])
def test_env_and_attach_reach_an_instance_of_either_line(both: Both, line: str) -> None:
    creds = _ocm(both, "env", line, "--json", check=True).json()
    assert creds["OPENCODE_SERVER_URL"] == _ls(both)[line]["url"]
    # 2.x's own clients read OPENCODE_PASSWORD first: `ocm env` sets it for them.
    assert ("OPENCODE_PASSWORD" in creds) is (line == "v2")
    # The TUI of the instance's line, authenticated although a stale password is in the
    # caller's environment: it shows the server's model only once the server answered it.
    screen = _tui(both, line, {"OPENCODE_PASSWORD": "stale", "OPENCODE_SERVER_PASSWORD": "x"})
    assert "Scripted model" in screen, screen[-2000:]


_ESCAPES = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()=>][0-9A-Z]?"
)


def _tui(both: Both, name: str, extra: dict[str, str], timeout: float = 90) -> str:
    """`ocm attach NAME` on a pseudo-terminal until the screen shows the model (or the
    deadline); then the TUI (ocm's own process, which it replaced) is ended by its PID."""
    import pty

    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", "attach", name],
        env={**os.environ, **both.env, **extra, "TERM": "xterm-256color"},
        stdin=child, stdout=child, stderr=child, start_new_session=True,
    )  # fmt: skip
    os.close(child)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([parent], [], [], 0.2)  # a deadline, not a sleep
            if ready:
                try:
                    seen += os.read(parent, 65536)
                except OSError:
                    break
                if b"Scripted model" in _ESCAPES.sub("", seen.decode(errors="replace")).encode():
                    break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        os.close(parent)
    return _ESCAPES.sub("", seen.decode(errors="replace"))


# -- logs, top, metrics --------------------------------------------------------------------------
def test_logs_of_both_lines_are_merged_and_their_errors_found(both: Both) -> None:
    for line in ("v1", "v2"):
        failed = _ocm(both, "run", "-i", line, f"ERR400 {_tag()}", "--json", timeout=180)
        assert failed.returncode == 10, str(failed)
    result = _ocm(both, "logs", "v1", "v2", "-n", "2000", "--level", "error", "--json")
    assert result.returncode == 0, str(result)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    for line in ("v1", "v2"):  # 2.x logs logfmt (`level=ERROR`), as 1.x does
        errors = [r for r in rows if r["instance"] == line]
        assert errors, (line, rows[-5:])
        assert {r["level"] for r in errors} == {"ERROR"}, errors
    assert any("scripted error 400" in r["line"] for r in rows if r["instance"] == "v2")
    text = _ocm(both, "logs", "v1", "v2", "-n", "50", check=True).stdout
    assert {ln.split(" | ", 1)[0].strip() for ln in text.splitlines() if " | " in ln} == {
        "v1", "v2"
    }  # fmt: skip


def test_top_and_metrics_show_both_lines(both: Both) -> None:
    for line in ("v1", "v2"):
        _record(both, "-i", line, f"hello {_tag()}")
    frame = _ocm(both, "top", "--once", "--json", check=True).json()
    rows = {r["name"]: r for r in frame["instances"]}
    for line in ("v1", "v2"):
        assert (rows[line]["status"], rows[line]["version"]) == ("running", VERSION[line])
        assert rows[line]["sessions"] >= 1
    table = _ocm(both, "top", "--once", check=True).stdout
    assert "2.1.2" in table
    assert "1.18.33" in table
    metrics = _ocm(both, "metrics", check=True).stdout
    assert 'ocm_instance_info{instance="v2",line="2.x",version="2.1.2"} 1.0' in metrics
    assert 'ocm_instance_info{instance="v1",line="1.x",version="1.18.33"} 1.0' in metrics
    assert 'ocm_instance_up{instance="v2"} 1.0' in metrics
    sessions = re.search(r'ocm_instance_sessions\{instance="v2"\} (\S+)', metrics)
    assert sessions is not None
    assert float(sessions.group(1)) >= 1


# -- doctor --------------------------------------------------------------------------------------
def test_doctor_checks_a_2x_projects_config_and_mcp_servers(
    both: Both, opencode2_bin: str, model_env: list[str], tmp_path: Path
) -> None:
    """2.x does not refuse a broken `opencode.json` (it leaves it out and logs why) and lists
    no MCP server until the location has loaded: doctor says what is wrong on 2.x too."""
    project = tmp_path / "broken"
    project.mkdir()
    (project / "opencode.json").write_text('{ "model": oops ')
    config = json.loads(model_env[0].split("=", 1)[1])
    config["mcp"] = {"nope": {"type": "local", "command": ["/nonexistent/mcp-server"]}}
    content = f"OPENCODE_CONFIG_CONTENT={json.dumps(config)}"
    # Warmed (conftest turns it off): a start checks the project only where it warms it.
    started = _ocm(both, "start", "sick", "--opencode", opencode2_bin, "--dir", str(project),
                   "--env", content, "--timeout", "90",
                   env={"OCM_WARMUP_TIMEOUT": "120"})  # fmt: skip
    try:
        assert started.returncode == 0, str(started)
        # `ocm start` says so at once (its config check; MCP servers are doctor's).
        assert "warning: sick: OpenCode did not load the project's config" in started.stderr
        doctor = _ocm(both, "doctor", "--json").json()
        found = [c for c in doctor["checks"] if c["name"] == "instance sick" and not c["ok"]]
        details = [c["detail"] for c in found]
        assert details == [
            f"OpenCode did not load the project's config {project / 'opencode.json'}: "
            "rejected malformed JSON or JSONC document"
        ], details
        (project / "opencode.json").unlink()  # now the MCP server's failure shows
        _ocm(both, "restart", "sick", check=True)
        doctor = _ocm(both, "doctor", "--json").json()
        found = [c for c in doctor["checks"] if c["name"] == "instance sick" and not c["ok"]]
        assert [c["detail"].split(":")[0] for c in found] == ["MCP server nope failed"], found
        assert "/nonexistent/mcp-server" in found[0]["detail"]
        healthy = [c for c in doctor["checks"] if c["name"] in ("instance v1", "instance v2")]
        assert all(c["ok"] for c in healthy), healthy
    finally:
        _ocm(both, "rm", "--force", "sick")


# -- MCP and the dashboard -----------------------------------------------------------------------
@pytest.mark.anyio
async def test_mcp_task_run_works_on_both_lines(both: Both) -> None:
    from mcp import Client

    from opencode_manager.mcpserver.tools import build_server

    settings = Settings.load(home=Path(both.env["OCM_HOME"]))
    async with Client(build_server(settings)) as client:
        for line in ("v1", "v2"):
            tag = _tag()
            result = await client.call_tool(
                "task_run", {"prompt": f"BASH: echo mcp-{tag}", "instance": line, "wait_s": 50}
            )
            for _ in range(3):  # MCP waits are capped at 50 s: then task_wait, as a client does
                assert not result.is_error, result.content
                done = result.structured_content
                assert isinstance(done, dict)
                if done["done"]:
                    break
                result = await client.call_tool(
                    "task_wait", {"task_id": done["task_id"], "wait_s": 50}
                )
            assert done["done"] is True, done
            record = done["record"]
            assert (record["status"], record["instance"]) == ("completed", line)
            assert [c["tool"] for c in record["tool_calls"]] == [SHELL[line]]
            assert record["text"] == f"Tool said: mcp-{tag}"
        status = await client.call_tool("fleet_status", {})
        assert isinstance(status.structured_content, dict)
        rows = {r["name"]: r for r in status.structured_content["instances"]}
        assert {n: r.get("version") for n, r in rows.items()} == VERSION


def test_the_dashboard_shows_both_lines_and_a_2x_task(both: Both) -> None:
    record = _record(both, "-i", "v2", f"BASH: echo dash-{_tag()}")
    token = "a-login-token-for-this-test"
    app = Dashboard(Settings.load(home=Path(both.env["OCM_HOME"])), token).app(["127.0.0.1"])
    with TestClient(app, base_url="http://127.0.0.1:8766", follow_redirects=False) as web:
        assert web.get("/login", params={"token": token}).status_code == 303
        fleet = web.get("/")
        assert fleet.status_code == 200, fleet.text
        for line in ("v1", "v2"):
            row = fleet.text.split(f'<tr data-instance="{line}">', 1)[1].split("</tr>", 1)[0]
            assert f'<td class="opt">{VERSION[line]}</td>' in row, row
        page = web.get("/instances/v2")
        assert page.status_code == 200, page.text
        assert "2.1.2" in page.text
        task = web.get(f"/tasks/{record['id']}")
        assert task.status_code == 200, task.text
        assert "shell" in task.text
        assert record["text"] in task.text
        assert record["session_id"] in task.text


# -- supervision: a crashed 2.x server is restarted by its keeper --------------------------------
def test_a_killed_2x_server_is_restarted_by_its_keeper(both: Both) -> None:
    before = _ls(both)["v2"]
    server = psutil.Process(before["pid"])
    assert "serve" in server.cmdline()  # the server the registry recorded (ocm's own)
    server.kill()  # SIGKILL: a crash, not a stop
    server.wait(timeout=30)

    def back() -> bool:
        now = _ls(both)["v2"]
        return (
            now["status"] == "running" and now["healthy"] is True
            and now["pid"] != before["pid"] and now["restarts"] == before["restarts"] + 1
        )  # fmt: skip

    wait_for(back, timeout=120, message="v2 restarted by its keeper")
    again = _ls(both)["v2"]
    assert (again["version"], again["line"]) == ("2.1.2", 2)  # on its own binary
    events = [e["kind"] for e in _ocm(both, "events", "v2", "--json", check=True).json()]
    assert "crashed" in events, events
    assert _record(both, "-i", "v2", f"BASH: echo after-{_tag()}")["status"] == "completed"


# -- the binary kept: save/resurrect and systemd (last: it stops and brings back v2) ---------------
def test_save_resurrect_and_systemd_keep_a_2x_instance_on_its_binary(
    both: Both, opencode_bin: str, tmp_path: Path
) -> None:
    before = _ls(both)["v2"]
    _ocm(both, "save", check=True)
    units = tmp_path / "units"
    _ocm(both, "export", "systemd", "v2", "--dir", str(units), check=True)
    unit = (units / "ocm-v2.service").read_text()
    start = next(ln.split("=", 1)[1] for ln in unit.splitlines() if ln.startswith("ExecStart="))
    assert start.endswith("start --existing v2")
    environment = dict(
        ln.split("=", 1)[1].split("=", 1) for ln in unit.splitlines()
        if ln.startswith("Environment=")
    )  # fmt: skip
    # The unit's own command, as systemd would run it, with a 1.x as OCM_OPENCODE (the
    # caller's here): the instance comes back on the binary it was started with.
    assert environment["OCM_OPENCODE"] == opencode_bin
    _ocm(both, "stop", "v2", check=True)
    boot = subprocess.run(start.split(), env={**os.environ, **both.env, **environment},
                          capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
    assert boot.returncode == 0, boot.stderr
    back = _ls(both)["v2"]
    assert (back["status"], back["version"], back["line"]) == ("running", "2.1.2", 2)
    # Forgotten, then brought back by `ocm resurrect` from what `ocm save` wrote.
    _ocm(both, "rm", "--force", "v2", check=True)
    resurrected = _ocm(both, "resurrect", "--json", check=True).json()
    assert resurrected["started"] == ["v2"], resurrected
    again = _ls(both)["v2"]
    assert (again["status"], again["version"], again["line"]) == ("running", "2.1.2", 2)
    assert again["port"] == before["port"]
    wait_for(lambda: _record(both, "-i", "v2", "BASH: echo back")["status"] == "completed",
             timeout=60, message="a task on the resurrected v2")  # fmt: skip
    # One `ocm stop` across both lines: the same answer for each.
    stopped = _ocm(both, "stop", "v1", "v2", "--json", check=True).json()
    assert sorted((r["name"], r["status"]) for r in stopped) == [
        ("v1", "stopped"),
        ("v2", "stopped"),
    ]
    assert set(stopped[0]) == set(stopped[1])
