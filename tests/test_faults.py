"""Fault injection (issue 10): the promises hold when the registry is locked, commands race,
keepers freeze or die, rows lie, and the provider keeps failing. Each test names its row.

Rows covered elsewhere: 2-4 in tasks/test_exactly_once.py; 1 and 7 (registry locked, log
directory deleted, a 3 MB line) also over fakes in keeper/test_loop.py; 11 in test_registry.py;
16-17 in instances/test_binary.py.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from opencode_manager.models import InstanceSpec, State
from opencode_manager.registry import Registry

from conftest import Fleet
from helpers import (
    Ocm,
    Result,
    assert_one_line_error,
    forge_row,
    invoke_ocm,
    patient,
    run_ocm,
    wait_for,
)


def _home() -> Path:
    return Path(os.environ["OCM_HOME"])


def _start(name: str, model_env: list[str], *args: str) -> dict[str, Any]:
    env_args = [arg for item in model_env for arg in ("--env", item)]
    result = invoke_ocm("start", name, *env_args, *args, "--json", check=True).json()
    return dict(result[0])


def _info(name: str) -> dict[str, Any]:
    data = invoke_ocm("ls", "--json", "--no-foreign", check=True).json()
    return next(dict(i) for i in data if i["name"] == name)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _new_server_under(keeper: psutil.Process, old_pid: int) -> int | None:
    """The pid of the server the keeper runs, if not `old_pid` (it restarted it)."""
    for child in keeper.children():
        try:
            if child.pid != old_pid and "serve" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue  # the killed server, not reaped yet
    return None


# -- row 5: commands that run at once --------------------------------------------------------
def test_fifty_parallel_commands_never_exit_7() -> None:
    invoke_ocm("ls", check=True)
    commands = [
        ["ls", "--json", "--no-foreign"],
        ["batch", "ls", "--json"],
        ["results", "--json"],
        ["events", "--json"],
        ["cleanup", "--dry-run", "--json"],
    ] * 10
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda args: run_ocm(*args), commands))
    assert [str(r) for r in results if r.returncode != 0] == []


# -- row 14: identity is what the process is ---------------------------------------------------
def test_a_row_pointing_at_an_unrelated_process_is_never_signalled(
    ocm: Ocm, tmp_path: Path
) -> None:
    stranger = subprocess.Popen(["sleep", "1000"])
    try:
        ctime = psutil.Process(stranger.pid).create_time()
        ocm("ls", check=True)
        registry = Registry(_home() / "registry.db")
        with registry.transaction() as db:
            registry.reserve(db, InstanceSpec(name="liar", dir=str(tmp_path)), port=4998)
        # The right PID and start time, but the process is not a server nor a keeper.
        forge_row(
            registry, "liar", state=State.RUNNING, server_pid=stranger.pid, server_ctime=ctime,
            keeper_pid=stranger.pid, keeper_ctime=ctime, url="http://127.0.0.1:4998",
        )  # fmt: skip
        registry.close()
        assert _info("liar")["status"] == "crashed"
        assert_one_line_error(ocm("stop", "liar"), 4, "not running")
        assert ocm("stop", "--all", "--json", check=True).json() == []
        assert stranger.poll() is None  # never signalled
    finally:
        stranger.kill()
        stranger.wait()


# -- row 6: start, cleanup and stop --all agree on a starting instance -------------------------
@pytest.mark.integration
def test_cleanup_and_stop_all_respect_instances_coming_up(
    model_env: list[str], tmp_path: Path
) -> None:
    env_args = [arg for item in model_env for arg in ("--env", item)]

    def starting(prefix: str, count: int) -> bool:
        data = invoke_ocm("ls", "--json", "--no-foreign", check=True).json()
        return len([i for i in data if i["name"].startswith(prefix)]) == count

    start = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", "start", "up", "-n", "3", *env_args,
         "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: starting("up-", 3), timeout=30, message="3 rows")
    report = invoke_ocm("cleanup", "--json", check=True).json()
    assert report["removed_instances"] == []
    assert report["reconciled"] == []
    out, err = start.communicate(timeout=patient(180))
    assert start.returncode == 0, err
    assert [i["status"] for i in json.loads(out)] == ["running"] * 3

    # Servers that take 20 s to come up: the stop below lands while they are still starting.
    slow = tmp_path / "opencode"
    real = os.environ["OCM_OPENCODE"]
    slow.write_text(f'#!/bin/sh\ncase "$1" in serve) sleep 20;; esac\nexec {real} "$@"\n')
    slow.chmod(0o755)
    start = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", "start", "down", "-n", "2", "--opencode",
         str(slow), *env_args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    wait_for(lambda: starting("down-", 2), timeout=30, message="2 rows")
    stopped = invoke_ocm("stop", "--all", "--json", check=True).json()
    assert {s["name"] for s in stopped} >= {"down-1", "down-2"}
    _, err = start.communicate(timeout=patient(180))
    assert start.returncode == 6, err  # the start reports that its instances were stopped
    assert "stopped while starting" in err
    final = {i["name"]: i for i in invoke_ocm("ls", "--json", "--no-foreign", check=True).json()}
    assert {final[n]["status"] for n in ("down-1", "down-2")} == {"stopped"}
    assert all(final[n]["pid"] is None for n in final)  # nothing came up afterwards
    assert (_home() / "secrets" / "up-1.password").exists()


# -- row 12: a stop that cannot be recorded says so ------------------------------------------
@pytest.mark.integration
def test_a_stop_that_cannot_be_recorded_says_so(model_env: list[str]) -> None:
    info = _start("unrec", model_env)
    blocker = sqlite3.connect(_home() / "registry.db", timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the registry's write lock
    try:
        result = invoke_ocm("stop", "unrec", env={"OCM_REGISTRY_TIMEOUT": "1"})
        assert_one_line_error(
            result,
            7,
            "stopped unrec, but the registry could not record it",
            "its keeper stays to record it",
        )
        assert _gone(info["pid"])
        assert not _gone(info["keeper_pid"])  # it stays until it can write how it ended
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_for(lambda: _gone(info["keeper_pid"]), timeout=30, message="the keeper recording it")
    assert _info("unrec")["status"] == "stopped"


# -- row 13: a frozen keeper is visible, and stop does not wait for it -------------------------
@pytest.mark.integration
def test_a_frozen_keeper_is_shown_and_bypassed(model_env: list[str]) -> None:
    info = _start("frozen", model_env)
    os.kill(info["keeper_pid"], signal.SIGSTOP)
    shown = _info("frozen")
    assert shown["status"] == "running"
    assert shown["keeper_answering"] is False
    table = invoke_ocm("ls", "--no-foreign", check=True).stdout
    assert "keeper not answering" in table
    result = invoke_ocm("stop", "frozen", "--timeout", "1", "--json", check=True).json()
    assert result[0]["via"] == "ocm"
    assert _gone(info["pid"])
    assert _gone(info["keeper_pid"])


# -- row 10: a stop after the keeper died still ends what the agent left running -------------
@pytest.mark.integration
def test_stop_after_keeper_death_ends_a_daemon_the_agent_started(model_env: list[str]) -> None:
    tag = uuid.uuid4().hex[:6]
    info = _start("daemon", model_env)
    invoke_ocm(
        "run",
        "-i",
        "daemon",
        f"BASH: nohup sleep 1001{len(tag)} >/dev/null 2>&1 & echo {tag}",
        check=True,
    )

    def the_daemon() -> psutil.Process | None:
        for proc in psutil.process_iter(["cmdline"]):
            if proc.info["cmdline"] == ["sleep", f"1001{len(tag)}"]:
                return proc
        return None

    daemon = wait_for(the_daemon, timeout=30, message="the agent's daemon")
    assert isinstance(daemon, psutil.Process)
    os.kill(info["keeper_pid"], signal.SIGKILL)
    wait_for(lambda: _gone(info["keeper_pid"]), timeout=10, message="keeper gone")
    invoke_ocm("stop", "--all", check=True)
    wait_for(lambda: not daemon.is_running() or daemon.status() == psutil.STATUS_ZOMBIE,
             timeout=15, message="the daemon ended")  # fmt: skip


# -- row 1: keepers survive a locked registry ------------------------------------------------
@pytest.mark.integration
def test_a_keeper_supervises_through_a_locked_registry(model_env: list[str]) -> None:
    info = _start("locked", model_env, "--health-interval", "0.5")
    keeper = psutil.Process(info["keeper_pid"])
    blocker = sqlite3.connect(_home() / "registry.db", timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        os.kill(info["pid"], signal.SIGKILL)  # the server crashes while the lock is held

        wait_for(
            lambda: _new_server_under(keeper, info["pid"]),
            timeout=60,
            message="a new server under the same keeper",
        )
        log = _home() / "logs" / "locked.log"
        wait_for(
            lambda: "registry not writable" in log.read_text(),
            timeout=30,
            message="the keeper noticing it cannot write, and carrying on",
        )
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_for(
        lambda: (i := _info("locked"))["status"] == "running" and i["restarts"] == 1,
        timeout=60,
        message="the registry caught up",
    )
    assert keeper.is_running()
    assert keeper.pid == _info("locked")["keeper_pid"]
    events = [e["kind"] for e in invoke_ocm("events", "locked", "--json", check=True).json()]
    assert "keeper_error" in events  # it said it could not write, then caught up
    invoke_ocm("stop", "locked", check=True)


# -- row 9: nothing under OCM_HOME is readable by others --------------------------------------
def _others_can_read(path: Path, home: Path) -> bool:
    """Whether another user could read this file (every directory on the way must let them
    through)."""
    if not path.stat().st_mode & (stat.S_IROTH | stat.S_IRGRP):
        return False
    for parent in [path.parent, *path.parent.parents]:
        mode = parent.stat().st_mode
        if not mode & (stat.S_IXOTH | stat.S_IXGRP):
            return False
        if parent == home:
            break
    return True


@pytest.mark.integration
def test_nothing_under_ocm_home_is_readable_by_others(fleet: Fleet) -> None:
    home = Path(fleet.env["OCM_HOME"])
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    invoke_ocm("run", "BASH: echo modes", env=fleet.env, check=True)
    exposed = [str(p) for p in home.rglob("*") if p.is_file() and _others_can_read(p, home)]
    assert exposed == []
    ours = [home / "registry.db", *(home / "logs").iterdir(), *(home / "secrets").iterdir()]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in ours), [
        (str(p), oct(p.stat().st_mode)) for p in ours
    ]


# -- row 15: a provider that keeps failing ends the task after its retry budget ---------------
@pytest.mark.integration
def test_a_provider_that_keeps_failing_ends_the_task(fleet: Fleet) -> None:
    result: Result = invoke_ocm(
        "run", f"ERR500 {uuid.uuid4().hex[:6]}", "--max-retries", "0", "--json", env=fleet.env
    )
    assert result.returncode == 10, str(result)
    record = result.json()
    assert record["error"]["name"] == "RetriesExhausted"
    assert "scripted error 500" in record["error"]["message"]
    assert record["max_retries"] == 0


# -- row 8: the agent's tools never get the server password -----------------------------------
@pytest.mark.integration
def test_the_password_is_in_no_tool_output_record_or_log(fleet: Fleet) -> None:
    password = invoke_ocm("env", "oc-3", "--json", env=fleet.env, check=True).json()[
        "OPENCODE_SERVER_PASSWORD"
    ]
    result = invoke_ocm("run", "-i", "oc-3", "BASH: env", "--json", env=fleet.env, check=True)
    record = result.json()
    output = json.dumps(record["tool_calls"])
    assert "OCM_INSTANCE_MARK" in output  # the tool's environment was printed...
    assert password not in result.stdout + result.stderr  # ...without the password
    assert "OPENCODE_SERVER_PASSWORD=" not in output.replace("OPENCODE_SERVER_PASSWORD=\\n", "")
    home = Path(fleet.env["OCM_HOME"])
    holders = [
        str(p)
        for p in home.rglob("*")
        if p.is_file() and "secrets" not in p.parts and password.encode() in p.read_bytes()
    ]
    assert holders == []  # not in the registry, the logs, or OpenCode's own session store
    # and auth still holds: the plugin removed the password from the tools, not the server
    url = fleet.instances[2]["url"]
    assert httpx.get(f"{url}/global/health", trust_env=False).status_code == 401


def test_a_non_loopback_hostname_is_warned_about() -> None:
    from opencode_manager.cli.instances import exposure_warning

    # Printed after `ocm start` succeeds (tests bind loopback only, so the wiring is not run).
    warning = exposure_warning("0.0.0.0")
    assert warning is not None
    assert "clear text without TLS" in warning
    assert exposure_warning("127.0.0.1") is None
    assert exposure_warning("localhost") is None


# -- rows 1, 7, 11: a full disk ---------------------------------------------------------------
@pytest.fixture
def tiny_home() -> Any:
    """OCM_HOME on its own small tmpfs, so a test can fill it up (needs root to mount)."""
    home = _home()
    home.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(home)],
        capture_output=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield home
    finally:
        invoke_ocm("stop", "--all")
        subprocess.run(["umount", "-l", str(home)], check=False)


def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        return
    finally:
        os.close(fd)


@pytest.mark.integration
def test_a_full_disk_loses_nothing_and_stops_no_keeper(
    tiny_home: Path, model_env: list[str]
) -> None:
    info = _start("full", model_env, "--health-interval", "0.5")
    keeper = psutil.Process(info["keeper_pid"])
    filler = tiny_home / "filler"
    _fill(filler)
    # The server keeps working (its output is drained and dropped, never blocking it)...
    done = invoke_ocm("run", "-i", "full", "BASH: echo while-full", "--json")
    assert "while-full" in done.stdout or done.returncode == 7, str(done)
    # ...a write the user asks for fails clearly, on one line...
    assert_one_line_error(invoke_ocm("start", "another", *[]), 7, "disk is full")
    # ...and a crash is still restarted from the keeper's memory.
    os.kill(info["pid"], signal.SIGKILL)

    wait_for(
        lambda: _new_server_under(keeper, info["pid"]),
        timeout=60,
        message="a restart while the disk is full",
    )
    filler.unlink()
    wait_for(
        lambda: (i := _info("full"))["status"] == "running" and i["restarts"] == 1,
        timeout=60,
        message="the registry catching up once there is room",
    )
    assert keeper.is_running()
    invoke_ocm("stop", "full", check=True)


@pytest.mark.integration
def test_a_full_disk_shows_what_runs_and_is_recorded_once_there_is_room(
    tiny_home: Path, model_env: list[str]
) -> None:
    """Issue 23, point 6: under a full disk `ls` shows the restarted server running with its
    PID and its keeper answering; a stop made meanwhile is recorded, with its events, once
    there is room; doctor never says `crashed: None`."""
    info = _start("full", model_env, "--health-interval", "0.5")
    keeper = psutil.Process(info["keeper_pid"])
    filler = tiny_home / "filler"
    # OpenCode 1.18.33 checkpoints its database's WAL as it starts and exits when that needs
    # room; a SIGKILL leaves the warm-up's writes in the WAL. Saved first, as a server that
    # had been idle a while would have them, the restart needs no room (the unsaved case is
    # reported by its cause: test_launch's explain_exit test).
    for db in (tiny_home / "instances" / "full").rglob("opencode.db"):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _fill(filler)
    os.kill(info["pid"], signal.SIGKILL)
    restarted = wait_for(
        lambda: _new_server_under(keeper, info["pid"]), timeout=60, message="a restart"
    )
    assert isinstance(restarted, int)
    shown = wait_for(
        lambda: (i := _info("full"))["healthy"] and i,
        timeout=60,
        message="the restarted server shown",
    )
    assert isinstance(shown, dict)
    assert (shown["status"], shown["pid"]) == ("running", restarted)
    registry = Registry(tiny_home / "registry.db")
    limit = 3 * 0.5 + 10.0  # fleet.HEARTBEAT_INTERVALS * interval + HEARTBEAT_MARGIN
    wait_for(
        lambda: time.time() - (registry.get("full").heartbeat_at or 0) > limit + 1,
        timeout=60,
        message="its heartbeat gone stale (it cannot write)",
    )
    registry.close()
    # (A loaded machine may miss one health probe: what is asserted is a reading where the
    # server answered, and that reading must say running, with the keeper answering.)
    shown = wait_for(lambda: (i := _info("full"))["healthy"] and i, timeout=60)
    assert isinstance(shown, dict)
    assert (shown["status"], shown["pid"]) == ("running", restarted)
    assert shown["keeper_answering"] is True  # alive, and its server answers health
    table = wait_for(
        lambda: "running" in (out := invoke_ocm("ls", "--no-foreign", check=True).stdout) and out
    )
    assert "not answering" not in str(table)
    doctor = invoke_ocm("doctor", "--json").json()
    assert "disk" in [c["name"] for c in doctor["checks"] if not c["ok"]], doctor
    # Its health check passes; what OpenCode makes of the project may fail under a full
    # disk (it cannot write its storage), and then says so, not that the config is broken.
    mine = [c for c in doctor["checks"] if c["name"] == "instance full"]
    assert mine[0]["ok"], mine
    for check in mine[1:]:
        assert check["ok"] or "disk is full" in check["detail"], check
    assert not any("None" in c["detail"] for c in doctor["checks"])

    stopped = invoke_ocm("stop", "full")  # during the outage
    assert_one_line_error(stopped, 7, "stopped full", "its keeper stays to record it")
    assert _gone(restarted)
    assert keeper.is_running()
    assert _info("full")["status"] == "stopping"  # not `crashed`: its keeper has the truth

    filler.unlink()  # room again
    wait_for(lambda: _gone(keeper.pid), timeout=60, message="the keeper recording, then going")
    final = _info("full")
    assert (final["status"], final["restarts"], final["pid"]) == ("stopped", 1, None)
    kinds = [e["kind"] for e in invoke_ocm("events", "full", "--json", check=True).json()]
    tail = [k for k in kinds if k not in ("keeper_error", "unhealthy")]
    assert tail[-5:] == ["crashed", "restarted", "started", "healthy", "stopped"], kinds
    assert "keeper_error" in kinds  # it said it could not write, then caught up


def test_a_log_on_a_full_disk_drops_lines_then_says_how_many(tiny_home: Path) -> None:
    from opencode_manager.keeper.logsink import LogSink

    log = tiny_home / "logs" / "x.log"
    now = [0.0]
    sink = LogSink(log, max_size=10 << 20, keep=1, capture_stdio=False, clock=lambda: now[0])
    sink.server_line("before")
    filler = tiny_home / "filler"
    _fill(filler)
    for i in range(2000):  # far more than the room left in the log's last page
        sink.server_line(f"while full {i} " + "x" * 100)
    assert sink.dropped > 0
    filler.unlink()
    now[0] += 60  # past the pause before reopening
    sink.server_line("after")
    sink.close()
    text = log.read_text()
    assert "before" in text
    assert text.rstrip().endswith("after") or "after" in text
    assert f"{sink.dropped} log line(s) were lost" in text


# -- issue 9: `stop --timeout` reaches the keeper ---------------------------------------------
@pytest.mark.integration
def test_stop_timeout_is_the_keepers_too(model_env: list[str], tmp_path: Path) -> None:
    real = os.environ["OCM_OPENCODE"]
    stubborn = tmp_path / "opencode"  # a server that ignores SIGTERM (SIG_IGN survives exec)
    stubborn.write_text(f"#!/bin/sh\ntrap '' TERM\nexec {real} \"$@\"\n")
    stubborn.chmod(0o755)
    info = _start("stubborn", model_env, "--opencode", str(stubborn))
    assert psutil.Process(info["pid"]).cmdline()[0] == real  # the server itself, no shell left
    [result] = invoke_ocm("stop", "stubborn", "--timeout", "1", "--json", check=True).json()
    assert result["via"] == "keeper"
    assert _gone(info["pid"])
    log = (_home() / "logs" / "stubborn.log").read_text()
    assert "SIGKILL after 1 s" in log  # the keeper used the stop's timeout, not its own 10 s
    assert "needed SIGKILL" in log
