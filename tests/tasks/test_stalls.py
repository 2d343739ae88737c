"""Integration: a server that stalls around a send (SIGSTOP, longer than the client's read
timeout) gets each prompt once, and the record tells the truth (issue 23, point 2).

The stall is a real SIGSTOP of the instance's server (its PID from the registry, proven ours
by start time and command line), begun at a step of the send by the runner's checkpoint
seam and ended by SIGCONT after `STALL` seconds. Prompts are counted at the scripted model.
The clients' read timeout is lowered (`OCM_HTTP_TIMEOUT`) so the tests take seconds;
`OCM_TEST_HTTP_TIMEOUT` and `OCM_TEST_STALL` change them (e.g. a 12 s stall against the old
fixed 10 s timeout).
"""

from __future__ import annotations

import json
import os
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

from opencode_manager import process
from opencode_manager.instances.fleet import Fleet as RegistryFleet
from opencode_manager.models import ProcessIdentity, State
from opencode_manager.scripted_model import ScriptedModelServer
from opencode_manager.settings import Settings

from conftest import Fleet, own_fleet
from helpers import assert_one_line_error, invoke_ocm, patient, wait_for

# The module's first test starts its instance; each runs the CLI through a stall or two on
# a machine that may be busy: more than pytest's default cut-off.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

HTTP_TIMEOUT = float(os.environ.get("OCM_TEST_HTTP_TIMEOUT", "1.5"))
STALL = float(os.environ.get("OCM_TEST_STALL", str(HTTP_TIMEOUT + 3.0)))
# Longer than a task waits for a silent server (runner.TaskRunner.patience: 10 s here):
# until a send has given up (0), or this many seconds.
LONG_STALL = float(os.environ.get("OCM_TEST_LONG_STALL", "0"))
NAME = "st-1"

# Runs the real CLI (`main(argv)`) with a fault seam: when a task passes STEP for the NTH
# time, its server is stopped (SIGSTOP) and continued SECONDS later; with SECONDS <= 0, as
# soon as a send gives up on it (whenever that is on a loaded machine: a condition, not a
# race between two clocks), and after 300 s at the latest. The server is the process the
# test proved ours (PID and start time given); the wrapper checks it again.
WRAPPER = """
import os, sys, threading
import psutil
from opencode_manager import AsyncManager
from opencode_manager.cli.main import main
from opencode_manager.client import AsyncOpencodeClient
from opencode_manager.tasks.runner import TaskRunner

step, nth, pid, ctime, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
    float(sys.argv[4]), float(sys.argv[5])
seen = 0

async def checkpoint(name):
    global seen
    if name != step:
        return
    seen += 1
    if seen != nth:
        return
    server = psutil.Process(pid)
    assert abs(server.create_time() - ctime) < 0.05, "not the server the test proved ours"
    server.suspend()
    print(f"stalled at {step}", file=sys.stderr, flush=True)
    timer = threading.Timer(seconds if seconds > 0 else 300.0, server.resume)
    timer.daemon = True
    timer.start()
    stalled.append(server)

stalled = []

def resume_after_giving_up():
    if seconds <= 0 and stalled:
        stalled.pop().resume()
        print("resumed after a send gave up", file=sys.stderr, flush=True)

run, batch_run = AsyncManager.run, AsyncManager.batch_run

async def run_with_fault(self, *args, **kwargs):
    return await run(self, *args, checkpoint=checkpoint, **kwargs)

async def batch_run_with_fault(self, *args, **kwargs):
    return await batch_run(self, *args, checkpoint=checkpoint, **kwargs)

prompt_async = AsyncOpencodeClient.prompt_async

async def counted_prompt_async(self, *args, **kwargs):
    # What the client saw of each send: answered, or its answer lost.
    try:
        await prompt_async(self, *args, **kwargs)
    except Exception as exc:
        print(f"prompt_async lost: {exc}", file=sys.stderr, flush=True)
        raise
    print("prompt_async answered", file=sys.stderr, flush=True)

send = TaskRunner.send

async def reported_send(self):
    try:
        await send(self)
    except Exception as exc:
        print(f"send gave up: {exc}", file=sys.stderr, flush=True)
        resume_after_giving_up()
        raise

AsyncManager.run, AsyncManager.batch_run = run_with_fault, batch_run_with_fault
AsyncOpencodeClient.prompt_async = counted_prompt_async
TaskRunner.send = reported_send
sys.exit(main(sys.argv[6:]))
"""


@pytest.fixture(scope="module")
def stalling(
    tmp_path_factory: pytest.TempPathFactory, opencode_bin: str, model_env: list[str]
) -> Iterator[Fleet]:
    """One instance whose keeper will not recycle it during a stall (a long health
    interval), and commands that give up on an answer after HTTP_TIMEOUT seconds."""
    args = [NAME, "--health-interval", "60"]
    for item in model_env:
        args += ["--env", item]
    with own_fleet(tmp_path_factory.mktemp("stalls"), opencode_bin, *args) as started:
        started.env["OCM_HTTP_TIMEOUT"] = str(HTTP_TIMEOUT)
        yield started


def _server(fleet: Fleet) -> ProcessIdentity:
    """The instance's server as the registry records it, proven ours (start time and
    command line) before anything signals it; once it is running (a test before may have
    killed it: its keeper is still bringing the new one up)."""
    settings = Settings.load(environ=fleet.env)
    registry_fleet = RegistryFleet(settings, backups=False)

    def running() -> ProcessIdentity | None:
        record = registry_fleet.resolve(NAME)
        if record.state is not State.RUNNING or process.verified(record.server) is None:
            return None
        return record.server

    try:
        found = wait_for(running, timeout=120, message=f"{NAME} running")
    finally:
        registry_fleet.close()
    assert isinstance(found, ProcessIdentity)
    return found


def _continue(identity: ProcessIdentity) -> None:
    """Whatever happened in the wrapper, the server is not left stopped."""
    proc = process.verified(identity)
    if proc is not None:
        proc.send_signal(signal.SIGCONT)


def _with_stall(
    fleet: Fleet,
    tmp_path: Path,
    step: str,
    *argv: str,
    nth: int = 1,
    stall: float = STALL,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    identity = _server(fleet)
    script = tmp_path / "stall.py"
    script.write_text(WRAPPER)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, str(script), step, str(nth), str(identity.pid),
             repr(identity.create_time), str(stall), *argv],
            env={**os.environ, **fleet.env, **(env or {})}, capture_output=True, text=True,
            timeout=patient(240), check=False,
        )  # fmt: skip
    finally:
        _continue(identity)
    assert f"stalled at {step}" in proc.stderr, proc.stderr[-3000:]  # the fault happened
    assert time.monotonic() - started >= stall
    return proc


def _turns(model: ScriptedModelServer, tag: str) -> list[str]:
    """The turns the model was asked to start whose prompt carries `tag` (their texts)."""
    return [
        str(e["last_user_text"])
        for e in model.requests.entries()
        if e["has_tools"] and not e["followup"] and tag in str(e["last_user_text"])
    ]


@pytest.mark.parametrize("step", ["session", "sending", "sent"])
def test_ocm_run_sends_once_and_tells_the_truth_when_the_server_stalls(
    stalling: Fleet, tmp_path: Path, model: ScriptedModelServer, step: str
) -> None:
    tag = f"stall-{step}-{uuid.uuid4().hex[:6]}"
    prompt = f"BASH: echo {tag}"
    proc = _with_stall(stalling, tmp_path, step, "run", "-i", NAME, "--json", prompt)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if step == "sending":  # the stall hit the prompt's POST: its answer was lost
        assert "prompt_async lost" in proc.stderr, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert record["status"] == "completed", record
    assert record["prompted"] is True
    assert record["sending"] is False
    assert record["attempts"] == 1
    assert record["message_id"].startswith("msg_")
    assert tag in record["text"]
    assert _turns(model, tag) == [prompt]  # once, and its text not doubled
    stored = invoke_ocm("result", record["id"], "--json", env=stalling.env, check=True).json()
    assert stored["status"] == "completed"
    assert stored["prompted"] is True


@pytest.mark.parametrize("step", ["sending", "sent"])
def test_a_batch_sends_every_task_once_when_the_server_stalls(
    stalling: Fleet, tmp_path: Path, model: ScriptedModelServer, step: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    prompts = [f"BASH: echo stall-batch-{step}-{tag}-{i}" for i in range(3)]
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps({"id": f"t{i}", "prompt": p}) + "\n"
                            for i, p in enumerate(prompts)))  # fmt: skip
    # The second task's send stalls the server while the first one runs: every task on it
    # meets the stall at a different point of its own send.
    proc = _with_stall(
        stalling, tmp_path, step, "batch", str(path), "-i", NAME, "--per-instance", "3",
        "--json", nth=2,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if step == "sending":
        assert "prompt_async lost" in proc.stderr, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["counts"] == {"completed": 3}, summary
    for task in summary["tasks"]:
        record = invoke_ocm("result", task["task"], "--json", env=stalling.env, check=True).json()
        assert record["attempts"] == 1, record
        assert record["prompted"] is True
    for prompt in prompts:
        assert _turns(model, prompt) == [prompt], (prompt, _turns(model, prompt))


def test_a_batch_that_gave_up_on_a_send_follows_the_prompt_and_never_sends_it_again(
    stalling: Fleet, tmp_path: Path, model: ScriptedModelServer
) -> None:
    """The stall outlasts the task's patience with a silent server (10 s here): the runner
    gives up on the send, the batch waits for the instance and looks at the session, finds
    the prompt (busy, done, or stored and not started yet) and follows it; it used to send
    it again, and under load a prompt stored but not started yet was taken for a lost turn
    and sent again in a new session. The second send stalls the server, so that both
    tasks have their session before it (a session that cannot be made is another story)."""
    tag = uuid.uuid4().hex[:6]
    prompts = [f"SLEEP 1 stall-long-{tag}-{i}" for i in range(2)]
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    proc = _with_stall(
        stalling, tmp_path, "sending", "batch", str(path), "-i", NAME, "--per-instance", "2",
        "--json", nth=2, stall=LONG_STALL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "send gave up" in proc.stderr, proc.stderr[-3000:]  # the batch took over
    summary = json.loads(proc.stdout)
    assert summary["counts"] == {"completed": 2}, summary
    for prompt in prompts:
        assert _turns(model, prompt) == [prompt], (prompt, _turns(model, prompt))


def test_ocm_run_says_the_server_crashed_not_timed_out(
    stalling: Fleet, model: ScriptedModelServer
) -> None:
    """kill -9 of the server under `ocm run`: the keeper restarts it without the turn; the
    record says the instance went away (failed, exit 10), not "timed out"."""
    identity = _server(stalling)
    tag = f"crash-{uuid.uuid4().hex[:6]}"
    prompt = f"SLEEP 6 {tag}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", "run", "-i", NAME, "--timeout", "40",
         "--json", prompt],
        env={**os.environ, **stalling.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: _turns(model, tag), timeout=60, message="the prompt at the model")
        server = process.verified(identity)
        assert server is not None
        server.kill()
        out, err = proc.communicate(timeout=patient(120))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 10, err[-3000:]
    record: dict[str, Any] = json.loads(out)
    assert record["status"] == "failed", record
    assert record["error"]["name"] == "InstanceUnreachable", record["error"]
    message = record["error"]["message"]
    assert "went away" in message, message
    assert "timed out" not in message, message
    assert _turns(model, tag) == [prompt]
    wait_for(
        lambda: psutil.pid_exists(identity.pid) is False or process.verified(identity) is None,
        timeout=30,
        message="the killed server gone",
    )


def test_ocm_run_async_fails_clearly_when_no_session_could_be_made(stalling: Fleet) -> None:
    """The server is stopped for longer than every attempt at POST /session: no session,
    so no task id to wait for (it used to print `TASK None INSTANCE` and exit 0)."""
    identity = _server(stalling)
    server = process.verified(identity)
    assert server is not None
    server.suspend()
    try:
        result = invoke_ocm(
            "run", "--async", "-i", NAME, "hello TEXT async",
            env={**stalling.env, "OCM_HTTP_TIMEOUT": "0.4"}, timeout=120,
        )  # fmt: skip
    finally:
        _continue(identity)
    assert_one_line_error(
        result, 8, f"{NAME} did not answer POST /session within 0.8 s", "OCM_HTTP_TIMEOUT"
    )
    assert "None" not in result.stdout
    tasks = invoke_ocm("results", "--json", env=stalling.env, check=True).json()
    failed = [t for t in tasks if t["prompt"] == "hello TEXT async"]
    assert [(t["status"], t["session_id"]) for t in failed] == [("failed", None)]
