"""Integration: `ocm batch` on the shared fleet of three instances."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.scripted_model import ScriptedModelServer

from conftest import Fleet
from helpers import assert_one_line_error, invoke_ocm, wait_for

pytestmark = pytest.mark.integration


def _write(path: Path, prompts: list[str]) -> Path:
    path.write_text(
        "".join(json.dumps({"id": f"t{i + 1}", "prompt": p}) + "\n" for i, p in enumerate(prompts))
    )
    return path


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = peak = 0
    for _, step in points:
        level += step
        peak = max(peak, level)
    return peak


def _sends(model: ScriptedModelServer, prompts: list[str]) -> Counter[str]:
    wanted = set(prompts)
    return Counter(
        e["last_user_text"]
        for e in model.requests.entries()
        if e["has_tools"] and e["last_user_text"] in wanted
    )


def test_batch_of_twelve_respects_limits_and_writes_results(
    fleet: Fleet, tmp_path: Path, model: ScriptedModelServer
) -> None:
    tag = uuid.uuid4().hex[:6]
    prompts = [f"SLEEP 1 batch-{tag}-{i}" for i in range(12)]
    out = tmp_path / "out"
    result = invoke_ocm(
        "batch",
        str(_write(tmp_path / "b.jsonl", prompts)),
        "--per-instance",
        "1",
        "--out",
        str(out),
        "--json",
        env=fleet.env,
        timeout=240,
    )
    assert result.returncode == 0, str(result)
    summary = result.json()
    assert isinstance(summary, dict)
    assert summary["counts"] == {"completed": 12}
    assert summary["status"] == "completed"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"t{i}.json" for i in range(1, 13)] + ["summary.json"]
    )
    records = [json.loads((out / f"t{i}.json").read_text()) for i in range(1, 13)]
    assert {r["instance"] for r in records} == {"oc-1", "oc-2", "oc-3"}
    by_instance: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        by_instance.setdefault(record["instance"], []).append(
            (record["started_at"], record["finished_at"])
        )
    assert all(_max_overlap(spans) == 1 for spans in by_instance.values())  # --per-instance 1
    assert _max_overlap([span for spans in by_instance.values() for span in spans]) <= 3
    assert set(_sends(model, prompts).values()) == {1}
    listed = invoke_ocm("batch", "ls", "--json", env=fleet.env, check=True).json()
    assert isinstance(listed, list)
    mine = [b for b in listed if b["id"] == summary["id"]]
    assert mine
    assert {"id", "created_at", "total", "done", "status"} <= set(mine[0])
    assert (mine[0]["total"], mine[0]["done"]) == (12, 12)
    shown = invoke_ocm("batch", "show", summary["id"], env=fleet.env, check=True).stdout
    assert "t12" in shown
    assert "12 completed" in shown


def test_kill_minus_nine_then_resume_runs_each_task_exactly_once(
    fleet: Fleet, tmp_path: Path, model: ScriptedModelServer
) -> None:
    tag = uuid.uuid4().hex[:6]
    prompts = [f"SLEEP 2 resume-{tag}-{i}" for i in range(12)]
    batch_file = _write(tmp_path / "r.jsonl", prompts)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opencode_manager",
            "batch",
            str(batch_file),
            "--per-instance",
            "1",
            "--json",
        ],
        env={**os.environ, **fleet.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def batch_state() -> dict[str, Any] | None:
        rows = invoke_ocm("batch", "ls", "--json", env=fleet.env, check=True).json()
        assert isinstance(rows, list)
        mine = [b for b in rows if b["source"] == str(batch_file)]
        return mine[0] if mine else None

    def midway() -> bool:
        state = batch_state()
        return bool(
            state
            and state["counts"].get("completed", 0) >= 3
            and state["counts"].get("running", 0) >= 1
        )

    wait_for(midway, timeout=120, message="a batch half done")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    state = batch_state()
    assert state is not None
    assert state["status"] == "interrupted"
    assert state["done"] < 12
    resumed = invoke_ocm("batch", "resume", state["id"], "--json", env=fleet.env, timeout=240)
    assert resumed.returncode == 0, str(resumed)
    summary = resumed.json()
    assert isinstance(summary, dict)
    assert summary["counts"] == {"completed": 12}
    sends = _sends(model, prompts)
    assert sorted(sends) == sorted(prompts)
    assert set(sends.values()) == {1}, sends  # none was sent twice


def test_pinned_tasks_and_port_prompt_lines(fleet: Fleet, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    port = fleet.instances[1]["port"]
    lines = tmp_path / "recipe.txt"
    lines.write_text(f"{port}: pinned one {tag}\n{port}: pinned two {tag}\n")
    result = invoke_ocm("batch", str(lines), "--json", env=fleet.env, check=True).json()
    assert isinstance(result, dict)
    assert {t["instance"] for t in result["tasks"]} == {fleet.instances[1]["name"]}


def test_invalid_batch_files_are_rejected_whole(fleet: Fleet, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": "fine too"}\n{"prompt": ""}\n')
    before = invoke_ocm("batch", "ls", "--json", env=fleet.env, check=True).json()
    assert_one_line_error(
        invoke_ocm("batch", str(bad), env=fleet.env), 2, f"{bad}:3: missing or empty prompt"
    )
    pinned = tmp_path / "pinned.jsonl"
    pinned.write_text('{"prompt": "a"}\n{"prompt": "b", "instance": "nope"}\n')
    assert_one_line_error(
        invoke_ocm("batch", str(pinned), env=fleet.env), 2, f"{pinned}:2: no instance named 'nope'"
    )
    assert_one_line_error(
        invoke_ocm("batch", str(tmp_path / "missing.jsonl"), env=fleet.env), 2, "cannot read"
    )
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "never runs"}\n')
    assert_one_line_error(
        invoke_ocm("batch", str(good), "--per-instance", "0", env=fleet.env),
        2,
        "invalid --per-instance 0",
    )
    assert invoke_ocm("batch", "ls", "--json", env=fleet.env, check=True).json() == before
    assert_one_line_error(invoke_ocm("batch", "show", "b-nope", env=fleet.env), 3, "no batch")
