"""Ctrl-C means the same everywhere: `up`, `down`, `resurrect` and `batch` undo or stop what
they started, print one line and exit 130 within a second or two.

Each test runs the real entry point in a process of its own, sends it SIGINT at a point it
polls for (the first instance starting, the first stop under way, a task running), then
checks what the command printed and what is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from opencode_manager.models import DesiredState, InstanceRecord, State
from opencode_manager.registry import Registry

from helpers import invoke_ocm, wait_for

pytestmark = pytest.mark.integration

#: Seconds from SIGINT to the exit. The goal is one or two; the bound leaves room for a
#: loaded machine (2 cores shared with other test runs), where the old `ocm up` went on for
#: about a minute, starting everything.
PROMPT_EXIT = 15.0


def _records() -> dict[str, InstanceRecord]:
    path = Path(os.environ["OCM_HOME"]) / "registry.db"
    if not path.exists():
        return {}
    registry = Registry(path)
    try:
        return {r.name: r for r in registry.instances()}
    finally:
        registry.close()


def _spawn(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
    )  # fmt: skip


def _interrupt(
    proc: subprocess.Popen[str], when: Callable[[], object], message: str
) -> tuple[str, str, float]:
    """SIGINT once `when()` holds; return stdout, stderr and the seconds the exit took."""
    wait_for(lambda: when() or proc.poll() is not None, timeout=120, interval=0.02,
             message=message)  # fmt: skip
    assert proc.poll() is None, f"it ended before {message}: {proc.communicate()}"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return out, err, time.monotonic() - sent


def _one_line(err: str, rc: int, *needles: str, before: int = 0) -> str:
    """The one line the interrupt printed (after the `before` lines the command had
    printed by then)."""
    lines = [ln for ln in err.splitlines() if ln.strip()][before:]
    assert rc == 130, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "Task was destroyed" not in err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


def _fleet_file(project: Path, count: int, extra: str = "") -> None:
    project.mkdir(exist_ok=True)
    (project / "ocm.toml").write_text(
        '[project]\nname = "ctrlc"\n\n[defaults]\nenv = { OPENCODE_DISABLE_MODELS_FETCH = "1", '
        f'npm_config_fetch_retries = "0" }}\n{extra}\n[group.w]\ncount = {count}\n'
    )


def _live(names: list[str]) -> list[str]:
    found = {i["name"]: i for i in invoke_ocm("ls", "--json", "--no-foreign", check=True).json()}
    return [n for n in names if found.get(n, {}).get("status") in ("running", "starting")]


def test_ctrl_c_on_up_removes_what_it_created(tmp_path: Path) -> None:
    _fleet_file(tmp_path / "p", 3)
    proc = _spawn("up", cwd=tmp_path / "p")
    out, err, took = _interrupt(
        proc,
        lambda: any(r.keeper is not None for r in _records().values()),
        "the first keeper launched",
    )
    line = _one_line(err, proc.returncode, "ocm: up interrupted:", "stopped and removed",
                     "`ocm up` starts them again")  # fmt: skip
    assert took < PROMPT_EXIT, f"{took:.1f} s: {line}"
    assert out == ""
    assert _records() == {}  # nothing of it is left, not even a stopped record


def test_ctrl_c_on_down_stops_no_more_and_says_what_runs(tmp_path: Path) -> None:
    _fleet_file(tmp_path / "p", 3)
    invoke_ocm("up", cwd=str(tmp_path / "p"), check=True)
    names = ["w-1", "w-2", "w-3"]
    try:
        proc = _spawn("down", cwd=tmp_path / "p")
        _, err, took = _interrupt(
            proc,
            lambda: any(r.desired is DesiredState.STOPPED for r in _records().values()),
            "the first stop requested",
        )
        line = _one_line(err, proc.returncode, "ocm: down interrupted:", "still running",
                         "`ocm down` again stops them")  # fmt: skip
        assert took < PROMPT_EXIT, f"{took:.1f} s: {line}"
        running = _live(names)
        assert 0 < len(running) < 3, line
        assert all(n in line.partition("stopped; ")[2] for n in running), line
    finally:
        invoke_ocm("stop", "--all")


def test_ctrl_c_on_resurrect_stops_again_what_it_started(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    invoke_ocm("start", "-n", "2", "--dir", str(project), check=True)
    invoke_ocm("save", check=True)
    invoke_ocm("stop", "--all", check=True)
    proc = _spawn("resurrect")
    out, err, took = _interrupt(
        proc,
        lambda: any(r.state is State.STARTING and r.keeper for r in _records().values()),
        "the first instance starting again",
    )
    line = _one_line(err, proc.returncode, "ocm: resurrect interrupted:",
                     "`ocm resurrect` brings them back")  # fmt: skip
    assert took < PROMPT_EXIT, f"{took:.1f} s: {line}"
    assert out == ""
    wait_for(lambda: _live(["oc-1", "oc-2"]) == [], timeout=15, message="both stopped")
    assert set(_records()) == {"oc-1", "oc-2"}  # recorded before: kept


def test_ctrl_c_on_batch_aborts_its_tasks_in_one_line(tmp_path: Path, model_env: list[str]) -> None:
    args = [a for item in model_env for a in ("--env", item)]
    invoke_ocm("start", "--dir", str(tmp_path), *args, check=True)
    try:
        tasks = tmp_path / "tasks.jsonl"
        tasks.write_text("".join(
            json.dumps({"id": f"t{i}", "prompt": "BASH: sleep 30"}) + "\n" for i in range(3)
        ))  # fmt: skip
        proc = _spawn("batch", str(tasks), "--per-instance", "1")
        _, err, took = _interrupt(
            proc,
            lambda: any(
                t["status"] == "running" and t.get("session_id")
                for t in invoke_ocm("results", "--json", check=True).json()
            ),
            "a task running",
        )
        assert err.splitlines()[0].endswith(": 3 tasks"), err  # the batch's first line
        line = _one_line(err, proc.returncode, "interrupted: 1 aborted and 2 cancelled",
                         "0 of 3 completed", "--requeue-cancelled", before=1)  # fmt: skip
        assert took < PROMPT_EXIT, f"{took:.1f} s: {line}"
        batch = invoke_ocm("batch", "ls", "--json", check=True).json()[0]
        assert batch["status"] == "cancelled"
    finally:
        invoke_ocm("stop", "--all")


@pytest.mark.parametrize("how", [("restart", "oc-1"), ("start", "--existing", "oc-1")])
def test_ctrl_c_on_restart_or_start_existing_stops_what_it_relaunched(
    tmp_path: Path, how: tuple[str, ...]
) -> None:
    invoke_ocm("start", "--dir", str(tmp_path), check=True)
    if how[0] == "start":
        invoke_ocm("stop", "oc-1", check=True)
    keeper = _records()["oc-1"].keeper
    proc = _spawn(*how)
    out, err, took = _interrupt(
        proc,
        lambda: (r := _records()["oc-1"]).keeper is not None and r.keeper != keeper,
        "oc-1 relaunched",
    )
    line = _one_line(err, proc.returncode, f"ocm: {how[0]} interrupted: oc-1 stopped")
    assert took < PROMPT_EXIT, f"{took:.1f} s: {line}"
    assert out == ""
    wait_for(lambda: _live(["oc-1"]) == [], timeout=15, message="oc-1 stopped")
    assert set(_records()) == {"oc-1"}  # recorded before: kept


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("logs", "oc-1", "-f"), "ocm: logs interrupted: stopped following oc-1"),
        (("monitor",), "ocm: monitor interrupted: stopped watching events"),
        (("top", "--json"), "ocm: top interrupted: stopped watching"),
    ],
)
def test_ctrl_c_on_a_watcher_is_one_line_and_exit_130(
    tmp_path: Path, args: tuple[str, ...], line: str
) -> None:
    """Nothing to undo, but the same answer as every other command (issue 26)."""
    registry = Registry(Path(os.environ["OCM_HOME"]) / "registry.db")
    try:
        from opencode_manager.models import InstanceSpec

        with registry.transaction() as db:
            registry.reserve(db, InstanceSpec(name="oc-1", dir=str(tmp_path)), port=None)
    finally:
        registry.close()
    log = Path(os.environ["OCM_HOME"]) / "logs" / "oc-1.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("level=INFO message=hello\n")
    proc = _spawn(*args)
    assert proc.stdout is not None
    if args[0] != "monitor":
        proc.stdout.readline()  # following: the tail, or the first frame, is out
    else:  # watching: it has the registry open (it prints nothing without live instances)
        wait_for(
            lambda: any(f.path.endswith("registry.db")
                        for f in psutil.Process(proc.pid).open_files()),
            timeout=60, message="monitor watching",
        )  # fmt: skip
    _, err, took = _interrupt(proc, lambda: True, "following")
    assert _one_line(err, proc.returncode) == line
    assert took < PROMPT_EXIT


def test_ctrl_c_on_stop_is_one_line_saying_what_goes_on(tmp_path: Path) -> None:
    invoke_ocm("start", "-n", "2", "--dir", str(tmp_path), check=True)
    try:
        proc = _spawn("stop", "--all")
        _, err, took = _interrupt(
            proc,
            lambda: any(r.desired is DesiredState.STOPPED for r in _records().values()),
            "the first stop requested",
        )
        line = _one_line(err, proc.returncode, "ocm: stop interrupted:",
                         "`ocm stop` again stops it")  # fmt: skip
        assert took < PROMPT_EXIT, f"{took:.1f} s: {line}"
    finally:
        invoke_ocm("stop", "--all")
