"""Integration: supervision under fault injection against real servers: the wiring (real
kill -9, SIGSTOP, rotation, PIDs). Backoff, flapping, memory and age recycling are replayed in
milliseconds over fakes in test_loop.py.

Every wait polls a condition with a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from opencode_manager.models import InstanceSpec, State
from opencode_manager.registry import Registry

from helpers import assert_one_line_error, forge_row, invoke_ocm, patient, wait_for

pytestmark = pytest.mark.integration


def _start(*args: str) -> dict[str, Any]:
    result = invoke_ocm("start", *args, "--json", check=True).json()
    assert isinstance(result, list)
    return dict(result[0])


def _info(name: str) -> dict[str, Any]:
    data = invoke_ocm("ls", "--json", "--no-foreign", check=True).json()
    assert isinstance(data, list)
    return next(dict(i) for i in data if i["name"] == name)


def _events(name: str) -> list[dict[str, Any]]:
    data = invoke_ocm("events", name, "-n", "200", "--json", check=True).json()
    assert isinstance(data, list)
    return data


def _healthy_again(name: str, old_pid: int) -> dict[str, Any] | None:
    info = _info(name)
    if info["status"] == "running" and info["healthy"] and info["pid"] not in (None, old_pid):
        return info
    return None


def test_kill_minus_nine_is_restarted_on_the_same_port() -> None:
    first = _start("s1")
    try:
        assert first["port"] != 4096  # OpenCode's own default stays free for the user
        os.kill(first["pid"], signal.SIGKILL)
        again = wait_for(
            lambda: _healthy_again("s1", first["pid"]), timeout=60, message="s1 restarted"
        )
        assert isinstance(again, dict)
        assert again["restarts"] == 1
        assert again["port"] == first["port"]
        assert again["last_exit"] == "signal SIGKILL"
        kinds = [e["kind"] for e in _events("s1")]
        assert kinds[-4:] == ["crashed", "restarted", "started", "healthy"]
        status = invoke_ocm("status", "s1", "--json", check=True).json()
        assert isinstance(status, dict)
        assert status["last_event"]["kind"] == "healthy"
    finally:
        invoke_ocm("stop", "s1")


def test_a_wedged_server_is_recycled() -> None:
    info = _start("wedge", "--health-interval", "1")
    stopped = psutil.Process(info["pid"])
    stopped.suspend()  # SIGSTOP: alive, listening, answering nothing
    again = wait_for(
        lambda: _healthy_again("wedge", info["pid"]), timeout=60, message="wedge recycled"
    )
    assert isinstance(again, dict)
    assert not stopped.is_running() or stopped.status() == psutil.STATUS_ZOMBIE
    kinds = [e["kind"] for e in _events("wedge")]
    assert "unhealthy" in kinds
    assert kinds[-3:] == ["restarted", "started", "healthy"]
    invoke_ocm("stop", "wedge", check=True)


def test_log_rotation_keeps_log_keep_files(tmp_path: Path) -> None:
    info = _start("chatty", "--log-max-size", "2k", "--log-keep", "2", "--health-interval", "1")
    creds = invoke_ocm("env", "chatty", "--json", check=True).json()
    assert isinstance(creds, dict)
    auth = (creds["OPENCODE_SERVER_USERNAME"], creds["OPENCODE_SERVER_PASSWORD"])
    logs = Path(os.environ["OCM_HOME"]) / "logs"
    visits = iter(range(1000))

    def chat() -> bool:
        # Each new directory makes the server log a few lines as it boots an instance for it.
        httpx.get(
            f"{info['url']}/session/status",
            auth=auth,
            trust_env=False,
            params={"directory": str(tmp_path / f"d{next(visits)}")},
        )
        return (logs / "chatty.log.2").exists()

    wait_for(chat, timeout=60, message="two rotations")
    # OpenCode's own log in the private data dir is capped too (copied aside, truncated).
    own = Path(os.environ["OCM_HOME"]) / "instances" / "chatty" / "data" / "opencode" / "log"
    wait_for(lambda: (own / "opencode.log.1").exists(), timeout=30, message="opencode.log capped")
    invoke_ocm("stop", "chatty", check=True)
    names = sorted(p.name for p in logs.iterdir() if p.name.startswith("chatty"))
    assert names == ["chatty.log", "chatty.log.1", "chatty.log.2"]
    assert all((logs / n).stat().st_size < 2048 + 4096 for n in names)  # one line may overshoot
    every = invoke_ocm("logs", "chatty", "-n", "100000", check=True).stdout.splitlines()
    on_disk = sum(len((logs / n).read_text().splitlines()) for n in names)
    assert len(every) == on_disk  # `ocm logs` reads across the rotated files


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "1000"])
    try:
        real = psutil.Process(stranger.pid).create_time()
        registry = Registry(Path(os.environ["OCM_HOME"]) / "registry.db")
        with registry.transaction() as db:
            registry.reserve(db, InstanceSpec(name="ghost", dir=str(tmp_path)), port=4999)
        # The row claims the PID, but with the start time of an older, dead process.
        forge_row(
            registry,
            "ghost",
            state=State.RUNNING,
            server_pid=stranger.pid,
            server_ctime=real - 500,
            keeper_pid=stranger.pid,
            keeper_ctime=real - 500,
            url="http://127.0.0.1:4999",
        )
        registry.close()
        assert _info("ghost")["status"] == "crashed"
        assert_one_line_error(invoke_ocm("stop", "ghost"), 4, "not running")
        assert invoke_ocm("stop", "--all", "--json", check=True).json() == []
        cleaned = invoke_ocm("cleanup", "--json", check=True).json()
        assert isinstance(cleaned, dict)
        assert cleaned["removed_instances"] == ["ghost"]
        assert stranger.poll() is None, "a stranger was signalled"
    finally:
        stranger.kill()
        stranger.wait(10)


def test_concurrent_commands_keep_the_registry_consistent() -> None:
    started = {i["name"]: i for i in invoke_ocm("start", "-n", "2", "--json", check=True).json()}

    def launch(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "opencode_manager", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    procs = [
        launch("stop", "oc-1"),
        launch("restart", "oc-2"),
        launch("start", "extra"),
        launch("ls", "--json"),
        launch("ls", "--json"),
        launch("status", "oc-2", "--json"),
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=patient(180))
        # `status` exits 1 while oc-2 is between its stop and its start: that is an answer.
        allowed = (0, 1) if "status" in list(proc.args) else (0,)  # type: ignore[arg-type]
        assert proc.returncode in allowed, (proc.args, err)
        assert "Traceback" not in err
    final = {i["name"]: i for i in invoke_ocm("ls", "--json", "--no-foreign", check=True).json()}
    assert final["oc-1"]["status"] == "stopped"
    assert final["oc-2"]["status"] == "running"
    assert final["oc-2"]["pid"] != started["oc-2"]["pid"]  # restarted: a new server
    assert final["oc-2"]["restarts"] == 0  # a deliberate restart is no crash to count
    assert final["extra"]["status"] == "running"
    ports = [i["port"] for i in final.values() if i["status"] == "running"]
    assert len(ports) == len(set(ports))
    invoke_ocm("stop", "--all", check=True)
