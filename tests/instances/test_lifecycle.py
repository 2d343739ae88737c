"""Integration: start, crash, stop, restart, remove real servers through the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from opencode_manager.models import InstanceSpec
from opencode_manager.registry import Registry

from helpers import assert_one_line_error, invoke_ocm, patient, popened, wait_for

pytestmark = pytest.mark.integration


def _start(*args: str, env_items: list[str] | None = None) -> list[dict[str, Any]]:
    extra: list[str] = []
    for item in env_items or []:
        extra += ["--env", item]
    result = invoke_ocm("start", *args, *extra, "--json", check=True)
    data = result.json()
    assert isinstance(data, list)
    return data


def _ls(*, foreign: bool = False) -> dict[str, dict[str, Any]]:
    """`ocm ls --json` by name (other tests' servers would show up as foreign: skip them)."""
    data = invoke_ocm("ls", "--json", *(() if foreign else ("--no-foreign",)), check=True).json()
    assert isinstance(data, list)
    return {i["name"]: i for i in data}


def _nothing_left() -> None:
    """A keeper records its last state, then exits: poll for the exit. (A command run
    in-process returns without the time a process of its own took to end, during which the
    keeper used to be gone already; under load one was seen alive a second later.)"""
    wait_for(lambda: _instance_processes() == [], timeout=10, message="no instance process left")


def _instance_processes() -> list[psutil.Process]:
    """Every live process under OCM_HOME's instances: keepers, servers and descendants."""
    home = os.environ["OCM_HOME"]
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if home in cmd or env.get("XDG_DATA_HOME", "").startswith(home):
            found.append(proc)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_crash_is_seen_and_stop_all_spares_a_foreign_server(
    tmp_path: Path, opencode_bin: str
) -> None:
    infos = _start("-n", "2", "--restart", "never")
    # A bare `opencode serve` started by hand, the way people do today.
    foreign_dir = tmp_path / "foreign"
    foreign_dir.mkdir()
    foreign = subprocess.Popen(
        [opencode_bin, "serve", "--port", "0"],
        cwd=foreign_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert foreign.stdout is not None
        line = ""
        while "listening on" not in line:
            line = foreign.stdout.readline()
            assert line, "foreign server exited"
        foreign_port = int(line.strip().rsplit(":", 1)[1])

        listed = wait_for(
            lambda: (ls := _ls(foreign=True)) and f"foreign:{foreign_port}" in ls and ls,
            message="foreign server listed",
        )
        assert isinstance(listed, dict)
        shown = listed[f"foreign:{foreign_port}"]
        assert shown["managed"] is False
        assert shown["status"] == "foreign"
        assert shown["pid"] == foreign.pid
        assert shown["healthy"] is True
        assert shown["version"] == "1.18.33"
        assert shown["auth"] is False

        # kill -9 of one server shows up in the next `ocm ls`.
        victim = infos[0]
        os.kill(victim["pid"], signal.SIGKILL)
        wait_for(  # `ls` sees the dead server before its keeper has recorded how it ended
            lambda: (
                (row := _ls()[victim["name"]])["status"] == "crashed"
                and "SIGKILL" in (row["last_exit"] or "")
            ),
            timeout=15,
            message="crash noticed and recorded",
        )
        crashed = _ls()[victim["name"]]
        assert crashed["pid"] is None
        assert crashed["healthy"] is False
        assert "SIGKILL" in (crashed["last_exit"] or "")

        # Acting on a foreign server by port is refused, and it is not signalled.
        refused = invoke_ocm("stop", str(foreign_port))
        assert_one_line_error(refused, 4, "ocm did not start")

        stopped = invoke_ocm("stop", "--all", "--json", check=True).json()
        assert isinstance(stopped, list)
        assert [r["name"] for r in stopped] == [infos[1]["name"]]
        assert all(r["port_freed"] for r in stopped)
        assert all(r["via"] == "keeper" for r in stopped)
        _nothing_left()
        after = _ls()
        assert after[infos[1]["name"]]["status"] == "stopped"
        assert after[victim["name"]]["status"] == "crashed"
        for info in infos:
            with socket.socket() as sock:
                # The port is free again (REUSEADDR, as servers bind: closed health-check
                # connections may linger in TIME_WAIT).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", info["port"]))
        assert foreign.poll() is None, "the foreign server was hurt"
        health = httpx.get(f"http://127.0.0.1:{foreign_port}/global/health", trust_env=False)
        assert health.status_code == 200
    finally:
        foreign.kill()
        foreign.wait(10)
        if foreign.stdout is not None:
            foreign.stdout.close()


def test_keeper_death_leaves_a_visible_stoppable_server() -> None:
    [info] = _start("k1")
    keeper = psutil.Process(_ls()["k1"]["keeper_pid"])
    keeper.kill()
    keeper.wait(10)
    shown = _ls()["k1"]
    assert shown["status"] == "running"
    assert shown["supervised"] is False
    assert shown["pid"] == info["pid"]
    result = invoke_ocm("stop", "k1", "--json", check=True).json()
    assert isinstance(result, list)
    assert result[0]["status"] == "stopped"
    assert result[0]["via"] == "ocm"  # no keeper: ocm ended the server itself
    _nothing_left()
    assert _ls()["k1"]["status"] == "stopped"


def test_stop_ends_bash_tool_children_in_their_own_session(model_env: list[str]) -> None:
    [info] = _start("b1", env_items=model_env)
    creds = invoke_ocm("env", "b1", "--json", check=True).json()
    assert isinstance(creds, dict)
    auth = (creds["OPENCODE_SERVER_USERNAME"], creds["OPENCODE_SERVER_PASSWORD"])
    base = creds["OPENCODE_SERVER_URL"]
    session = httpx.post(f"{base}/session", json={"title": "t"}, auth=auth, trust_env=False).json()
    response = httpx.post(
        f"{base}/session/{session['id']}/prompt_async",
        auth=auth,
        json={"parts": [{"type": "text", "text": "BASH: sleep 1000"}]},
        trust_env=False,
        timeout=30,
    )
    assert response.status_code == 204
    server = psutil.Process(info["pid"])

    def sleeper() -> psutil.Process | None:
        for child in server.children(recursive=True):
            if child.name() == "sleep":
                return child
        return None

    found = wait_for(sleeper, timeout=60, message="the bash tool's sleep 1000")
    assert isinstance(found, psutil.Process)
    assert os.getsid(found.pid) != os.getsid(server.pid)  # not reachable by killpg alone
    invoke_ocm("stop", "b1", check=True)
    assert not found.is_running() or found.status() == psutil.STATUS_ZOMBIE
    _nothing_left()


def test_restart_keeps_name_password_and_data() -> None:
    [before] = _start("r1")
    password = invoke_ocm("env", "r1", "--json", check=True).json()
    registry = Registry(Path(os.environ["OCM_HOME"]) / "registry.db")
    with registry.transaction() as db:  # an instance stopped on purpose stays stopped
        registry.reserve(db, InstanceSpec(name="idle", dir="/"), port=None)
    registry.mark_stopped("idle")
    registry.close()
    result = invoke_ocm("restart", "--all", "--json", check=True).json()
    assert isinstance(result, list)
    [after] = result
    assert after["name"] == "r1"
    assert after["status"] == "running"
    assert after["pid"] != before["pid"]
    assert after["restarts"] == 0  # a deliberate restart: the keeper's count starts again
    assert after["port"] == before["port"]  # an automatic port is kept while it is free
    assert after["uptime_s"] < 60  # the new process's figures, not the old one's
    again = invoke_ocm("env", "r1", "--json", check=True).json()
    assert isinstance(again, dict)
    assert isinstance(password, dict)
    assert again["OPENCODE_SERVER_PASSWORD"] == password["OPENCODE_SERVER_PASSWORD"]
    invoke_ocm("stop", "r1", check=True)
    _nothing_left()


def test_port_range_allocation_and_exhaustion(tmp_path: Path) -> None:
    port = _free_port()
    [info] = _start("p1", "--port-range", f"{port}-{port}", "--no-auth")
    assert info["port"] == port
    assert info["url"] == f"http://127.0.0.1:{port}"
    assert info["auth"] is False
    open_health = httpx.get(f"{info['url']}/global/health", trust_env=False)
    assert open_health.status_code == 200
    env_lines = invoke_ocm("env", "p1", check=True).stdout
    assert "export OPENCODE_SERVER_PASSWORD" not in env_lines
    assert "unset OPENCODE_SERVER_PASSWORD" in env_lines.splitlines()  # none left from before
    # Seen from another OCM_HOME it is foreign: read-only calls work without a password.
    elsewhere = {"OCM_HOME": str(tmp_path / "elsewhere")}
    ref = f"foreign:{port}"
    assert invoke_ocm("sessions", ref, "--json", env=elsewhere, check=True).json() == []
    paths = invoke_ocm("api", ref, "GET", "/path", env=elsewhere, check=True).json()
    assert isinstance(paths, dict)
    assert "directory" in paths
    assert_one_line_error(
        invoke_ocm("start", "p2", "--port-range", f"{port}-{port}"), 4, "exhausted"
    )
    assert_one_line_error(invoke_ocm("start", "p3", "--port", str(port)), 4, "already in use")
    assert set(_ls()) >= {"p1"}
    assert "p2" not in _ls()
    assert "p3" not in _ls()
    invoke_ocm("stop", "p1", check=True)


def test_port_held_by_someone_else_fails_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = invoke_ocm("start", "--port", str(port))
        assert_one_line_error(result, 4, f"port {port} is already in use")
    assert _ls() == {}


def test_invalid_config_fails_fast_with_cause_and_log_lines(isolated: dict[str, str]) -> None:
    config = Path(isolated["XDG_CONFIG_HOME"]) / "opencode" / "opencode.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('{ "model": ')
    result = invoke_ocm("start", "bad")
    assert result.returncode == 6, str(result)
    first, *tail = result.stderr.splitlines()
    assert "bad failed to start: invalid OpenCode config" in first
    assert "not valid JSON" in first
    assert tail
    assert tail[0] == "last log lines:"
    assert len(tail) > 2
    assert "Traceback" not in result.stderr
    shown = _ls()["bad"]
    assert shown["status"] == "crashed"
    assert shown["pid"] is None
    _nothing_left()


def test_rm_cleanup_and_logs(tmp_path: Path, isolated: dict[str, str]) -> None:
    [l1] = _start("l1")
    [l2] = _start("l2", "--shared-data")
    home = Path(os.environ["OCM_HOME"])
    private = psutil.Process(l1["pid"]).environ()["XDG_DATA_HOME"]
    assert private == str(home / "instances" / "l1" / "data")
    shared = psutil.Process(l2["pid"]).environ()["XDG_DATA_HOME"]
    assert shared == isolated["XDG_DATA_HOME"]
    follower = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", "logs", "l1", "l2", "-f", "-n", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        tails = [follower.stdout.readline(), follower.stdout.readline()]  # now it is following
        assert tails[0].startswith("l1 | ")
        assert tails[1].startswith("l2 | ")
        with open(home / "logs" / "l2.log", "a") as log:
            log.write("level=ERROR message=followed-line\n")
        assert follower.stdout.readline().strip() == "l2 | level=ERROR message=followed-line"
    finally:
        follower.terminate()
        _, stopped = follower.communicate(timeout=patient(10))
    assert follower.returncode == 130  # stopped like Ctrl-C: exit 130, one line
    assert stopped.splitlines() == ["ocm: logs interrupted: stopped following l1, l2"]
    one = invoke_ocm("logs", "l1", "-n", "5", check=True).stdout.splitlines()
    assert 0 < len(one) <= 5
    both = invoke_ocm("logs", "l1", "l2", "--grep", "healthy at", check=True).stdout
    assert "l1 | " in both
    assert "l2 | " in both
    assert_one_line_error(invoke_ocm("rm", "l1"), 4, "still running")
    invoke_ocm("stop", "--all", check=True)
    assert_one_line_error(invoke_ocm("stop", "l1"), 4, "not running")
    assert invoke_ocm("rm", "l1", "--json", check=True).json() == {"removed": ["l1"]}
    assert not (home / "secrets" / "l1.password").exists()
    assert (home / "logs" / "l1.log").exists()  # logs stay until cleanup
    kept = invoke_ocm("logs", "l1", "--grep", "healthy at", check=True).stdout  # and still read
    assert "healthy at" in kept
    dry = invoke_ocm("cleanup", "--dry-run", "--json", check=True).json()
    assert isinstance(dry, dict)
    assert dry["removed_instances"] == ["l2"]
    assert str(home / "logs" / "l1.log") in dry["removed_files"]
    assert (home / "logs" / "l1.log").exists()
    assert "l2" in _ls()
    done = invoke_ocm("cleanup", "--json", check=True).json()
    assert isinstance(done, dict)
    assert done["removed_instances"] == ["l2"]
    assert not (home / "logs" / "l1.log").exists()
    assert _ls() == {}
    assert_one_line_error(invoke_ocm("logs", "l1"), 3, "no instance named 'l1'")


def test_doctor_reports_a_healthy_instance(model_env: list[str]) -> None:
    _start("d1")
    report = invoke_ocm("doctor", "--json")
    assert report.returncode == 0, str(report)
    data = json.loads(report.stdout)
    names = {c["name"]: c for c in data["checks"]}
    assert data["ok"] is True
    assert names["binary"]["ok"]
    assert "1.18.33" in names["binary"]["detail"]
    assert names["instance d1"]["ok"]
    assert "refuses anonymous" in names["instance d1"]["detail"]
    invoke_ocm("stop", "d1", check=True)


@pytest.mark.timeout(900)  # ten servers starting at once on two busy cores, then stopped
def test_ten_concurrent_starts_give_ten_distinct_instances() -> None:
    argv = [sys.executable, "-m", "opencode_manager", "start", "--json"]
    results = []
    with popened([argv] * 10, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as procs:
        for proc in procs:
            out, err = proc.communicate(timeout=patient(200))
            assert proc.returncode == 0, err
            results.extend(json.loads(out))
    assert len({r["name"] for r in results}) == 10
    assert len({r["port"] for r in results}) == 10
    listed = _ls()
    assert sum(1 for i in listed.values() if i["managed"] and i["status"] == "running") == 10
    stopped = invoke_ocm("stop", "--all", "--json", check=True).json()
    assert isinstance(stopped, list)
    assert len(stopped) == 10
    _nothing_left()


def test_a_task_on_a_server_that_dies_fails_instead_of_hanging(model_env: list[str]) -> None:
    [info] = _start("dies", env_items=model_env)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opencode_manager",
            "run",
            "SLEEP 120 doomed",
            "-i",
            "dies",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    creds = invoke_ocm("env", "dies", "--json", check=True).json()
    assert isinstance(creds, dict)
    auth = (creds["OPENCODE_SERVER_USERNAME"], creds["OPENCODE_SERVER_PASSWORD"])
    wait_for(
        lambda: httpx.get(f"{info['url']}/session/status", auth=auth, trust_env=False).json(),
        timeout=30,
        message="the task running",
    )
    os.kill(info["pid"], signal.SIGKILL)
    out, err = proc.communicate(timeout=patient(60))
    assert proc.returncode == 10, err
    record = json.loads(out)
    assert record["status"] == "failed"
    assert record["error"]["name"] == "InstanceUnreachable"
    invoke_ocm("stop", "--all")


def test_ctrl_c_during_start_rolls_back_what_it_created() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", "start", "-n", "2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Interrupt once both are recorded and their keepers are bringing them up.
    wait_for(lambda: len(_ls()) == 2 and proc.poll() is None, timeout=30,
             message="two instances starting")  # fmt: skip
    proc.send_signal(signal.SIGINT)
    out, errors = proc.communicate(timeout=patient(60))
    assert proc.returncode == 130, errors
    assert "start interrupted: oc-1, oc-2 stopped and removed" in errors
    assert "Traceback" not in errors
    assert out == ""
    assert _ls() == {}
    wait_for(lambda: _instance_processes() == [], timeout=15, message="nothing left running")
