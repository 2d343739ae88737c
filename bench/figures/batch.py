"""2. Batch throughput: `ocm batch` against one `opencode run --attach &` per task, then wait."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..measure import SAMPLE_INTERVAL, BenchError, Series, check, run_command
from ..plan import Plan, SharedFleet
from ..report import Figure


def _recipe(fleet: SharedFleet, tasks: int, out: Path) -> str:
    """The shell recipe: tasks spread round-robin over the instances, all at once, then wait."""
    lines = ["#!/usr/bin/env bash", "pids=()"]
    for i in range(tasks):
        index = i % len(fleet.instances)
        url = fleet.instances[index].url
        lines.append(
            f'OPENCODE_SERVER_PASSWORD="$PW_{index}" "$OCM_OPENCODE" run --attach {url} '
            f"--format json bench task {i} > {out}/{i}.jsonl &"
        )
        lines.append("pids+=($!)")
    lines += [
        "status=0",
        'for pid in "${pids[@]}"; do wait "$pid" || status=1; done',
        "exit $status",
    ]
    return "\n".join(lines) + "\n"


def run(fleet: SharedFleet, plan: Plan) -> Figure:
    env = fleet.env
    n = plan.batch_tasks
    work = env.base / "batch"
    work.mkdir(exist_ok=True)
    tasks_file = work / "tasks.jsonl"
    tasks_file.write_text(
        "".join(json.dumps({"prompt": f"bench task {i}"}) + "\n" for i in range(n))
    )
    out = work / "out"
    out.mkdir(exist_ok=True)
    script = work / "recipe.sh"
    script.write_text(_recipe(fleet, n, out))
    recipe_env = {
        **fleet.env.server_env(),
        **{f"PW_{i}": inst.password for i, inst in enumerate(fleet.instances)},
    }
    figure = Figure(
        2,
        f"Batch throughput: {n} tasks over {len(fleet.instances)} instances",
        commands=[
            f"ocm batch tasks.jsonl --json   # {n} lines of "
            '{"prompt": "bench task N"}, default placement (--per-instance 2)',
            f"bash recipe.sh   # {n} x `OPENCODE_SERVER_PASSWORD=... opencode run "
            "--attach URL --format json bench task N > out/N.jsonl &` round-robin "
            "over the instances, then `wait` for each",
        ],
    )
    ocm_rate, recipe_rate = Series(), Series()
    ocm_wall, recipe_wall = Series(), Series()
    ocm_mem, recipe_mem = Series(), Series()
    for _ in range(plan.batch_runs):
        result = check(
            run_command(
                [env.ocm, "batch", str(tasks_file), "--json"],
                env=env.env,
                cwd=env.project,
                gnu_time=False,
                sample_tree=True,
                timeout=900,
            ),
            "ocm batch",
        )
        summary = json.loads(result.stdout)
        if summary["counts"].get("completed", 0) != n:
            raise BenchError(f"ocm batch did not complete every task: {summary['counts']}")
        ocm_wall.add(result.wall_s)
        ocm_rate.add(n / result.wall_s)
        ocm_mem.add((result.tree_peak_rss or 0) / 2**20)

        result = check(
            run_command(
                ["bash", str(script)],
                env=recipe_env,
                cwd=env.project,
                gnu_time=False,
                sample_tree=True,
                timeout=900,
            ),
            "the shell recipe",
        )
        recipe_wall.add(result.wall_s)
        recipe_rate.add(n / result.wall_s)
        recipe_mem.add((result.tree_peak_rss or 0) / 2**20)

    figure.add("ocm", "`ocm batch` throughput", "tasks/s", ocm_rate, baseline="recipe")
    figure.add("recipe", "shell recipe throughput", "tasks/s", recipe_rate)
    figure.add("ocm_wall", "`ocm batch` wall", "s", ocm_wall, baseline="recipe_wall")
    figure.add("recipe_wall", "shell recipe wall", "s", recipe_wall)
    figure.add("ocm_mem", "`ocm batch` peak client memory", "MB", ocm_mem, baseline="recipe_mem")
    figure.add("recipe_mem", "shell recipe peak client memory", "MB", recipe_mem)
    ratio = figure.ratio("ocm", "recipe")
    figure.goal(
        "`ocm batch` throughput >= 5x the shell recipe's",
        f"{ratio:.2f}x ({ocm_rate.median:.2f} vs {recipe_rate.median:.2f} tasks/s)",
        not math.isnan(ratio) and ratio >= 5,
    )
    figure.notes += [
        f"Peak client memory: the process tree of the command (bash and every `opencode run`, "
        f"or the `ocm batch` process and any children) sampled with psutil every "
        f"{SAMPLE_INTERVAL * 1000:.0f} ms; the maximum of the summed RSS.",
        "Every run is checked: `ocm batch` reports all tasks completed; every `opencode run` "
        "of the recipe exited 0.",
        "Runs alternate `ocm batch` and the recipe.",
    ]
    return figure
