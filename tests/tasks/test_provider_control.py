"""Provider control end to end (issue 27's acceptance): the real OpenCode 1.18.33 fleet and
the scripted model, `ocm` in processes of its own. Limits set here are removed at the end:
the fleet is shared."""

from __future__ import annotations

import contextlib
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

import pytest

from opencode_manager.scripted_model import BROKEN_MODEL, GOOD_MODEL, MODEL, ScriptedModelServer

from conftest import Fleet
from helpers import run_ocm, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _tag() -> str:
    return uuid.uuid4().hex[:8]


@contextlib.contextmanager
def limited(fleet: Fleet, *args: str) -> Iterator[None]:
    run_ocm("limits", "set", "scripted", *args, env=fleet.env, check=True)
    try:
        yield
    finally:
        run_ocm("limits", "rm", "scripted", env=fleet.env)


def _popen(fleet: Fleet, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", *args],
        env={**os.environ, **fleet.env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _batch_file(path: Path, prompts: list[str], model: str = MODEL) -> str:
    path.write_text("".join(json.dumps({"prompt": p, "model": model}) + "\n" for p in prompts))
    return str(path)


def _limits(fleet: Fleet) -> list[dict[str, Any]]:
    result = run_ocm("limits", "--json", env=fleet.env, check=True)
    rows = result.json()
    assert isinstance(rows, list)
    return rows


def test_two_batches_share_a_providers_limit_of_two(
    fleet: Fleet, model: ScriptedModelServer, tmp_path: Path
) -> None:
    tag = _tag()
    files = [
        _batch_file(tmp_path / f"{side}.jsonl", [f"SLEEP 0.4 {tag} {side}{n}" for n in range(10)])
        for side in ("a", "b")
    ]
    with limited(fleet, "--concurrency", "2"):
        procs = [_popen(fleet, "batch", "run", f, "--json") for f in files]
        queued = wait_for(
            lambda: any(r.get("queued") for r in _limits(fleet)), timeout=60, message="a queue"
        )
        top = run_ocm("top", "--once", "--json", env=fleet.env, check=True).json()
        outs = [p.communicate(timeout=240) for p in procs]
    assert queued
    shown = [q for q in top["queue"] if q["provider"] == "scripted"]
    assert shown  # `ocm top` shows the queue, in order
    assert [q["place"] for q in shown] == list(range(1, len(shown) + 1))
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out)["counts"] == {"completed": 10}
    turns = [r for r in model.requests.entries() if tag in (r["last_user_text"] or "")]
    assert len([r for r in turns if r["has_tools"]]) == 20
    peak = model.requests.peak_open(lambda r: r["has_tools"] and tag in (r["last_user_text"] or ""))
    assert peak == 2  # never more than the limit, and the limit was used


def test_a_task_past_its_budget_is_interrupted_and_ends_budget_exceeded(fleet: Fleet) -> None:
    """Each answer costs $0.33 (USAGE at the good model's price); the first is a tool call,
    and the answer after it would come 20 s later (LATER): the turn is stopped at once."""
    prompt = f"{_tag()} USAGE 100000 2000 LATER 20\nBASH: echo hi"
    began = time.monotonic()
    result = run_ocm("run", "-i", "oc-1", "--model", GOOD_MODEL, "--max-cost", "0.01",
                     "--auto-approve", "--json", prompt, env=fleet.env)  # fmt: skip
    assert result.returncode == 13, str(result)
    assert time.monotonic() - began < 20
    record = result.json()
    assert record["status"] == "budget_exceeded"
    assert record["error"]["name"] == "BudgetExceeded"
    assert record["cost"] == pytest.approx(0.33)
    assert "budget exceeded: spent $0.3300 of $0.01" in record["error"]["message"]


def test_a_batch_whose_budget_is_spent_starts_no_new_task(fleet: Fleet, tmp_path: Path) -> None:
    tag = _tag()
    prompts = [f"USAGE 100000 2000 {tag} {n}" for n in range(4)]
    path = _batch_file(tmp_path / "spend.jsonl", prompts, GOOD_MODEL)
    result = run_ocm("batch", "run", path, "--concurrency", "1", "--batch-max-cost", "0.5",
                     "--json", env=fleet.env)  # fmt: skip
    summary = result.json()
    assert summary["counts"] == {"completed": 2, "budget_exceeded": 2}, str(result)
    assert result.returncode == 13
    assert "ocm: 2 tasks stopped by a budget; BatchBudgetSpent: batch budget spent" in result.stderr
    left = [t for t in summary["tasks"] if t["status"] == "budget_exceeded"]
    assert all("2 tasks not started" in (t.get("error") or "") for t in left), left


def test_a_provider_outage_during_a_batch_is_recovered_without_resubmitting(
    fleet: Fleet, model: ScriptedModelServer, tmp_path: Path
) -> None:
    """503 for 20 s on the good model while a batch of 10 runs: OpenCode's retries are cut
    short (--max-retries 0), the provider's breaker opens (shown by `ocm limits`), the tasks
    wait and continue in their sessions, and every task completes."""
    tag = _tag()
    path = _batch_file(
        tmp_path / "outage.jsonl", [f"{tag} task {n}" for n in range(10)], GOOD_MODEL
    )
    model.faults.add(503, seconds=20, model="good")
    try:
        proc = _popen(
            fleet, "batch", "run", path, "--recover", "20", "--max-retries", "0", "--json",
            env={"OCM_BREAKER_COOLDOWN": "3", "OCM_BREAKER_THRESHOLD": "3"},
        )  # fmt: skip
        opened = wait_for(
            lambda: any(r.get("breaker") not in (None, "closed") for r in _limits(fleet)),
            timeout=60,
            message="the breaker to open",
        )
        out, err = proc.communicate(timeout=240)
    finally:
        model.faults.clear()
    assert opened
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["counts"] == {"completed": 10}, summary
    # Each prompt reached the model once after it was taken: continuations, not resubmissions.
    firsts = [r for r in model.requests.entries() if (r["last_user_text"] or "").startswith(tag)]
    assert {r["last_user_text"] for r in firsts} == {f"{tag} task {n}" for n in range(10)}
    listed = run_ocm("results", "--batch", summary["id"], "--json", env=fleet.env, check=True)
    records = listed.json()
    assert isinstance(records, list)
    continued = [r for r in records if len(r["turns"]) > 1]
    assert continued, "no task met the outage"
    for record in continued:
        assert record["turns"][0]["trouble"] == "transient"
        assert record["turns"][0]["action"] == "continue"
        assert record["turns"][-1]["status"] == "completed"


def test_a_refused_model_falls_back_and_the_record_says_so(fleet: Fleet) -> None:
    result = run_ocm("run", "-i", "oc-1", "--model", BROKEN_MODEL, "--fallback", GOOD_MODEL,
                     "--json", f"hello {_tag()}", env=fleet.env)  # fmt: skip
    assert result.returncode == 0, str(result)
    record = result.json()
    assert record["status"] == "completed"
    assert [t["model"] for t in record["turns"]] == [BROKEN_MODEL, GOOD_MODEL]
    assert record["turns"][0]["action"] == "fallback"
    assert record["model"] == GOOD_MODEL
    assert record["step_models"]
    assert set(record["step_models"]) == {GOOD_MODEL}


def test_the_same_key_submitted_twice_runs_once(fleet: Fleet, model: ScriptedModelServer) -> None:
    prompt = f"keyed {_tag()}"
    key = f"k-{_tag()}"
    args = ("run", "-i", "oc-1", "--model", MODEL, "--key", key, "--json", prompt)
    first = run_ocm(*args, env=fleet.env)
    second = run_ocm(*args, env=fleet.env)
    assert (first.returncode, second.returncode) == (0, 0), str(second)
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["status"] == "completed"
    asked = [
        r for r in model.requests.entries() if r["last_user_text"] == prompt and r["has_tools"]
    ]
    assert len(asked) == 1
    assert key not in first.stderr + second.stderr


def test_a_killed_holders_slot_is_free_again_and_nothing_is_sent_twice(
    fleet: Fleet, model: ScriptedModelServer
) -> None:
    held = f"SLEEP 30 {_tag()}"
    with limited(fleet, "--concurrency", "1"):
        holder = _popen(fleet, "run", "-i", "oc-1", "--model", MODEL, held)
        try:
            wait_for(lambda: any(r.get("in_use") for r in _limits(fleet)), timeout=60,
                     message="the slot taken")  # fmt: skip
            wait_for(lambda: any(r["last_user_text"] == held for r in model.requests.entries()),
                     timeout=60, message="the turn at the model")  # fmt: skip
            os.kill(holder.pid, signal.SIGKILL)
        finally:
            holder.wait(timeout=30)
            holder.communicate()
        after = f"after the kill {_tag()}"
        began = time.monotonic()
        result = run_ocm("run", "-i", "oc-2", "--model", MODEL, "--json", after, env=fleet.env)
        assert result.returncode == 0, str(result)
        assert time.monotonic() - began < 30  # well within the lease time
        assert result.json()["turns"][0]["queued_s"] < 5
    sent = [r for r in model.requests.entries() if r["last_user_text"] == held and r["has_tools"]]
    assert len(sent) == 1


def test_detached_tasks_wait_for_a_slot_and_a_killed_waiter_holds_none(
    fleet: Fleet, model: ScriptedModelServer
) -> None:
    """`--concurrency 1` and `ocm run --async`: the first task's slot outlives its command
    (held for its turn, which nobody waits for); a second sender waits `queued`, and killed
    there leaves nothing held; a third is sent only once the first's turn has ended, and
    the record of the killed one ends cancelled."""
    tag = _tag()
    first_text, killed_text, third_text = (f"SLEEP 4 {tag} {n}" for n in ("a", "b", "c"))
    with limited(fleet, "--concurrency", "1"):
        first = run_ocm("run", "--async", "--json", "-i", "oc-1", "--model", MODEL, first_text,
                        env=fleet.env, check=True).json()  # fmt: skip
        waiter = _popen(fleet, "run", "--async", "--json", "-i", "oc-2", "--model", MODEL,
                        killed_text)  # fmt: skip
        try:
            wait_for(lambda: any(r.get("queued") for r in _limits(fleet)), timeout=60,
                     message="the second sender queued")  # fmt: skip
            assert waiter.poll() is None  # still waiting: the first's turn holds the slot
            os.kill(waiter.pid, signal.SIGKILL)
        finally:
            waiter.wait(timeout=30)
            waiter.communicate()
        third = run_ocm("run", "--async", "--json", "-i", "oc-2", "--model", MODEL, third_text,
                        env=fleet.env, check=True).json()  # fmt: skip
        ended = run_ocm("wait", first["task_id"], "--json", env=fleet.env, check=True).json()
        assert ended["status"] == "completed"
        shown = run_ocm("result", third["task_id"], "--json", env=fleet.env, check=True).json()
        assert shown["started_at"] >= ended["finished_at"] - 0.5, (ended, shown)
        run_ocm("wait", third["task_id"], "--json", env=fleet.env, check=True)
        listed = run_ocm("results", "--json", env=fleet.env, check=True).json()
        killed = [r for r in listed if r["prompt"] == killed_text]
        assert [r["status"] for r in killed] == ["cancelled"]
        assert not any(r.get("in_use") for r in _limits(fleet))
    prompts = [r["last_user_text"] for r in model.requests.entries() if r["has_tools"]]
    assert killed_text not in prompts
