"""Integration: a batch's prompts reach the model exactly once, whatever kills the runner and
whoever resumes it (issue 10: rows 2, 3 and 4). Prompts are counted at the scripted model."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.scripted_model import ScriptedModelServer

from conftest import Fleet
from helpers import invoke_ocm, model_sends, patient, run_ocm, wait_for

pytestmark = pytest.mark.integration

# Runs a recorded batch in its own process and SIGKILLs itself when a task passes STEP for
# the NTH time: the fault-injection seam is AsyncManager.batch_run(checkpoint=...).
RUNNER = """
import asyncio, os, signal, sys
from opencode_manager import AsyncManager

step, nth, batch_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen = 0

async def checkpoint(name: str) -> None:
    global seen
    if name == step:
        seen += 1
        if seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)

async def main() -> None:
    async with AsyncManager() as ocm:
        await ocm.batch_run(batch_id, checkpoint=checkpoint)

asyncio.run(main())
"""


def _sends(model: ScriptedModelServer, prompts: list[str]) -> dict[str, int]:
    return model_sends(model, prompts)


def _create(fleet: Fleet, tmp_path: Path, prompts: list[str], name: str) -> str:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"id": f"t{i}", "prompt": p}) + "\n"
                            for i, p in enumerate(prompts)))  # fmt: skip
    code = (
        "import sys; from opencode_manager import BatchOptions, Manager\n"
        "with Manager() as ocm:\n"
        "    b = ocm.batch_create(open(sys.argv[1]).read(), BatchOptions(per_instance=1),"
        " source=sys.argv[1])\n"
        "    print(b.id)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], env={**os.environ, **fleet.env},
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return out.stdout.strip()


def _run_and_die(fleet: Fleet, tmp_path: Path, step: str, nth: int, batch_id: str) -> int:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    proc = subprocess.run(
        [sys.executable, str(script), step, str(nth), batch_id],
        env={**os.environ, **fleet.env}, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr[-2000:]
    return proc.returncode


def _show(fleet: Fleet, batch_id: str) -> dict[str, Any]:
    data = invoke_ocm("batch", "show", batch_id, "--json", env=fleet.env, check=True).json()
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("step", ["session", "sending", "sent", "finished"])
def test_a_runner_killed_at_any_step_resumes_without_sending_twice(
    fleet: Fleet, tmp_path: Path, model: ScriptedModelServer, step: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    prompts = [f"BASH: echo once-{step}-{tag}-{i}" for i in range(3)]
    batch_id = _create(fleet, tmp_path, prompts, step)
    assert _run_and_die(fleet, tmp_path, step, 2, batch_id) == -9  # died where we wanted
    assert _show(fleet, batch_id)["status"] == "interrupted"
    resumed = invoke_ocm("batch", "resume", batch_id, "--json", env=fleet.env, timeout=240)
    assert resumed.returncode == 0, str(resumed)
    summary = resumed.json()
    assert isinstance(summary, dict)
    assert summary["counts"] == {"completed": 3}
    sends = _sends(model, prompts)
    assert sends == dict.fromkeys(prompts, 1), sends


def test_concurrent_resumes_run_the_batch_once(
    fleet: Fleet, tmp_path: Path, model: ScriptedModelServer
) -> None:
    trials = int(os.environ.get("OCM_TEST_RESUME_TRIALS", "2"))
    for trial in range(trials):
        tag = uuid.uuid4().hex[:6]
        prompts = [f"SLEEP 0.5 race-{tag}-{i}" for i in range(4)]
        batch_id = _create(fleet, tmp_path, prompts, f"race{trial}")
        assert _run_and_die(fleet, tmp_path, "sent", 1, batch_id) == -9
        resume = ["batch", "resume", batch_id, "--json"]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(run_ocm, *resume, env=fleet.env, timeout=240) for _ in "abc"]
            results = [f.result() for f in futures]
        codes = sorted(r.returncode for r in results)
        assert codes.count(0) == 1, [str(r) for r in results]
        assert all(code == 4 for code in codes if code != 0), [str(r) for r in results]
        assert _show(fleet, batch_id)["counts"] == {"completed": 4}
        sends = _sends(model, prompts)
        assert sends == dict.fromkeys(prompts, 1), (trial, sends)


def test_no_task_is_lost_when_an_instance_restarts_mid_batch(
    model_env: list[str], tmp_path: Path, model: ScriptedModelServer
) -> None:
    env_args = [arg for item in model_env for arg in ("--env", item)]
    for name in ("rb-1", "rb-2"):
        invoke_ocm("start", name, "--dir", str(tmp_path), *env_args, check=True)
    tag = uuid.uuid4().hex[:6]
    prompts = [f"SLEEP 1 restart-{tag}-{i}" for i in range(8)]
    batch_file = tmp_path / "b.jsonl"
    batch_file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    proc = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", "batch", str(batch_file), "--per-instance",
         "2", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def some_running_on_rb2() -> bool:
        rows = invoke_ocm("results", "--status", "running", "--json", check=True).json()
        assert isinstance(rows, list)
        return any(r["instance"] == "rb-2" and r["prompted"] for r in rows)

    wait_for(some_running_on_rb2, timeout=60, message="a task running on rb-2")
    invoke_ocm("restart", "rb-2", check=True)
    out, _errors = proc.communicate(timeout=patient(240))
    assert proc.returncode == 0, [t for t in json.loads(out)["tasks"] if t["status"] != "completed"]
    summary = json.loads(out)
    assert summary["counts"] == {"completed": 8}, summary
    sends = _sends(model, prompts)
    assert set(sends) == set(prompts), sends  # every prompt reached the model
    invoke_ocm("stop", "--all", check=True)
