"""2. Batch throughput: `ocm batch` against one `opencode run --attach &` per task (2.x:
`--server`), then wait,
and against the REST floor (the same tasks as raw API calls); then the cost as the work grows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opencode_manager.lines import Line

from ..chart import Panel, svg
from ..env import ROOT, BenchEnv
from ..measure import SAMPLE_INTERVAL, BenchError, CommandResult, Series, check, run_command
from ..plan import Plan, SharedFleet
from ..report import Figure, timed_ratio_goal

PER_INSTANCE = 2  # `ocm batch`'s default --per-instance, which the floor copies
#: A run of the shell recipe whose `opencode run` clients failed on their shared local
#: database ("database is locked", seen at load averages above 12) is run again, this often.
RECIPE_RETRIES = 2
FLOOR_GOAL = 0.9  # `ocm batch` throughput >= 0.9x the REST floor's
SCALE_TOLERANCE = 0.10  # throughput of every size within 10% of the smallest one's
RSS_GROWTH_GOAL = 1.5  # peak RSS of the largest batch over that of the smallest


def _recipe(fleet: SharedFleet, tasks: int, out: Path) -> str:
    """The shell recipe: tasks spread round-robin over the instances, all at once, then wait."""
    lines = ["#!/usr/bin/env bash", "pids=()"]
    for i in range(tasks):
        index = i % len(fleet.instances)
        url = fleet.instances[index].url
        lines.append(
            f'OPENCODE_SERVER_PASSWORD="$PW_{index}" "$OCM_OPENCODE" run {_flag(fleet)} {url} '
            f"--format json bench task {i} > {out}/{i}.jsonl &"
        )
        lines.append("pids+=($!)")
    lines += [
        "status=0",
        'for pid in "${pids[@]}"; do wait "$pid" || status=1; done',
        "exit $status",
    ]
    return "\n".join(lines) + "\n"


def _flag(fleet: SharedFleet) -> str:
    """How the line's `opencode run` reaches a running server."""
    return "--attach" if fleet.env.line is Line.V1 else "--server"


def _tasks_file(work: Path, n: int) -> Path:
    path = work / f"tasks-{n}.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"bench task {i}"}) + "\n" for i in range(n)))
    return path


def _ocm_batch(
    env: BenchEnv, tasks_file: Path, n: int, latencies: Series | None = None
) -> CommandResult:
    """One `ocm batch` run, checked: every task completed; each task's seconds (from its
    start to its answer recorded) added to `latencies`."""
    result = check(
        run_command(
            [env.ocm, "batch", str(tasks_file), "--json"],
            env=env.env,
            cwd=env.project,
            gnu_time=False,
            sample_tree=True,
            timeout=900 + n,
        ),
        "ocm batch",
    )
    summary = json.loads(result.stdout)
    if summary["counts"].get("completed", 0) != n:
        raise BenchError(f"ocm batch did not complete every task: {summary['counts']}")
    if latencies is not None:
        for task in summary["tasks"]:
            latencies.add(float(task["duration_s"]))
    return result


def _floor(fleet: SharedFleet, n: int) -> tuple[CommandResult, dict[str, Any]]:
    """One run of the REST floor, checked; what it printed (its own seconds, each task's)."""
    directory = str(fleet.env.project)  # where the instances (and so `ocm batch`) work
    spec = [
        {"url": i.url, "username": i.username, "password": i.password, "directory": directory}
        for i in fleet.instances
    ]
    result = check(
        run_command(
            [
                fleet.env.python,
                "-m",
                "bench.rest_floor",
                "--tasks",
                str(n),
                "--per-instance",
                str(PER_INSTANCE),
                "--line",
                str(fleet.env.line.value),
            ],
            env={**fleet.env.env, "PYTHONPATH": str(ROOT)},
            cwd=fleet.env.project,
            gnu_time=False,
            sample_tree=True,
            stdin=json.dumps(spec),
            timeout=900,
        ),
        "the REST floor",
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    if data["completed"] != n:
        raise BenchError(f"the REST floor completed {data['completed']} of {n} tasks")
    if data["messages"] < 2 * n:  # each task's prompt and its answer, at least
        raise BenchError(f"the REST floor read {data['messages']} messages for {n} tasks")
    return result, data


def _floor_run(
    fleet: SharedFleet,
    n: int,
    wall: Series,
    rate: Series,
    mem: Series,
    inner: Series,
    latencies: Series,
) -> None:
    result, data = _floor(fleet, n)
    wall.add(result.wall_s)
    rate.add(n / result.wall_s)
    mem.add((result.tree_peak_rss or 0) / 2**20)
    inner.add(float(data["elapsed_s"]))
    for seconds in data["latencies_s"]:
        latencies.add(float(seconds))


def run(fleet: SharedFleet, plan: Plan) -> Figure:
    env = fleet.env
    n = plan.batch_tasks
    work = env.base / "batch"
    work.mkdir(exist_ok=True)
    tasks_file = _tasks_file(work, n)
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
            f"{_flag(fleet)} URL --format json bench task N > out/N.jsonl &` round-robin "
            "over the instances, then `wait` for each",
            f"python -m bench.rest_floor --tasks {n} --per-instance {PER_INSTANCE} "
            f"--line {fleet.env.line.value} < spec.json   # the REST floor: httpx alone, "
            + (
                "one /global/event stream per instance, "
                f"{PER_INSTANCE} workers per instance; per task POST /session, POST "
                "/session/ID/prompt_async, wait for idle, GET /session/ID/message"
                if fleet.env.line is Line.V1
                else f"{PER_INSTANCE} workers per instance; per task POST /api/session, POST "
                "/api/session/ID/prompt, POST /api/experimental/session/ID/wait, GET "
                "/api/session/ID/message until idle"
            ),
        ],
    )
    recipe_locked = 0
    ocm_rate, recipe_rate, floor_rate = Series(), Series(), Series()
    ocm_wall, recipe_wall, floor_wall = Series(), Series(), Series()
    ocm_mem, recipe_mem, floor_mem = Series(), Series(), Series()
    floor_inner = Series()
    ocm_latency, floor_latency = Series(), Series()  # every task of every measured run
    # Warm-ups, when this figure runs without the others: one `opencode run` alone (the first
    # one creates OpenCode's local database, and several creating it at once can fail), and
    # one task per instance slot (a server's first session in a directory loads its project).
    first = fleet.instances[0]
    check(
        run_command(
            [env.opencode, "run", _flag(fleet), first.url, "--format", "json", "bench warm-up"],
            env=fleet.attach_env(first),
            cwd=env.project,
            gnu_time=False,
        ),
        f"opencode run {_flag(fleet)} (warm-up)",
    )
    slots = len(fleet.instances) * PER_INSTANCE
    _ocm_batch(env, _tasks_file(work, slots), slots)
    for _ in range(plan.batch_runs):
        result = _ocm_batch(env, tasks_file, n, ocm_latency)
        ocm_wall.add(result.wall_s)
        ocm_rate.add(n / result.wall_s)
        ocm_mem.add((result.tree_peak_rss or 0) / 2**20)

        for attempt in range(1 + RECIPE_RETRIES):
            recipe_run = run_command(
                ["bash", str(script)],
                env=recipe_env,
                cwd=env.project,
                gnu_time=False,
                sample_tree=True,
                timeout=900,
            )
            locked = "database is locked" in recipe_run.stdout + recipe_run.stderr
            if recipe_run.returncode == 0 or not locked or attempt == RECIPE_RETRIES:
                break
            recipe_locked += 1  # the clients' shared local database, under load: again
        result = check(recipe_run, "the shell recipe")
        recipe_wall.add(result.wall_s)
        recipe_rate.add(n / result.wall_s)
        recipe_mem.add((result.tree_peak_rss or 0) / 2**20)

        _floor_run(fleet, n, floor_wall, floor_rate, floor_mem, floor_inner, floor_latency)
    # More `ocm batch` / REST floor pairs (seconds each; the recipe takes tens): their ratio
    # is near its goal, and one slow run of two moved it by 10% on this shared machine.
    for _ in range(plan.floor_runs - plan.batch_runs):
        result = _ocm_batch(env, tasks_file, n, ocm_latency)
        ocm_wall.add(result.wall_s)
        ocm_rate.add(n / result.wall_s)
        ocm_mem.add((result.tree_peak_rss or 0) / 2**20)
        _floor_run(fleet, n, floor_wall, floor_rate, floor_mem, floor_inner, floor_latency)

    figure.add("ocm", "`ocm batch` throughput", "tasks/s", ocm_rate, baseline="recipe")
    figure.add("recipe", "shell recipe throughput", "tasks/s", recipe_rate)
    figure.add("ocm_floor", "`ocm batch` throughput", "tasks/s", ocm_rate, baseline="floor")
    figure.add("floor", "REST floor throughput", "tasks/s", floor_rate)
    figure.add("ocm_wall", "`ocm batch` wall", "s", ocm_wall, baseline="recipe_wall")
    figure.add("recipe_wall", "shell recipe wall", "s", recipe_wall)
    figure.add("floor_wall", "REST floor wall", "s", floor_wall)
    figure.add("floor_inner", "REST floor, first request to last answer", "s", floor_inner)
    figure.add("ocm_latency", "`ocm batch` task latency (each task of every run)", "s",
               ocm_latency, baseline="floor_latency")  # fmt: skip
    figure.add("floor_latency", "REST floor task latency (each task of every run)", "s",
               floor_latency)  # fmt: skip
    figure.add("ocm_mem", "`ocm batch` peak client memory", "MB", ocm_mem, baseline="recipe_mem")
    figure.add("recipe_mem", "shell recipe peak client memory", "MB", recipe_mem)
    figure.add("floor_mem", "REST floor peak client memory", "MB", floor_mem)
    rate = "{:.2f} tasks/s".format
    timed_ratio_goal(figure, "ocm", "recipe", 5, "`ocm batch` throughput", rate, at_least=True)
    timed_ratio_goal(
        figure, "ocm_floor", "floor", FLOOR_GOAL, "`ocm batch` throughput", rate, at_least=True
    )
    if recipe_locked:
        figure.notes.append(
            f"{recipe_locked} run(s) of the shell recipe failed with `database is locked` (its "
            "24 `opencode run` clients share one local database) and were run again."
        )
    figure.notes += [
        f"Peak client memory: the process tree of the command (bash and every `opencode run`, "
        f"or the `ocm batch` process and any children) sampled with psutil every "
        f"{SAMPLE_INTERVAL * 1000:.0f} ms; the maximum of the summed RSS.",
        "Every run is checked: `ocm batch` reports all tasks completed; every `opencode run` "
        "of the recipe exited 0; the REST floor read the messages of every task (at least "
        "two per task: it counted only some of them before its counter was fixed).",
        "Task latency: every task of every measured run, from its start (`ocm batch`: the "
        "record's `started_at`, before its session is made; the floor: its POST /session) to "
        "its answer recorded (the floor: its messages read). A task waits for a free worker "
        "before it starts: that queueing is in the batch's wall, not here.",
        f"Runs alternate `ocm batch`, the recipe and the REST floor ({plan.batch_runs} of "
        f"each), then `ocm batch` and the floor alone ({plan.floor_runs} of each in all). "
        "Walls are measured around "
        "each process (interpreter start included, for all three); the floor's own "
        "first-request-to-last-answer time is shown too. The floor keeps no records, follows "
        "no asks, reads no todos or diff and does not retry: it is the limit, not a rival.",
        "The tasks are text-only turns (no tool call), so `ocm batch` does not ask for their "
        "diff or todos either (nothing can be there); a task with tool calls costs it those "
        "two reads more.",
    ]
    if plan.batch_scale:
        _scale(fleet, plan, figure)
    else:
        figure.notes.append("The cost-as-the-work-grows table was not measured (--no-scale).")
    return figure


def chart_path(plan: Plan, line: Line = Line.V1) -> tuple[Path, str]:
    """Where the scale chart goes, and its link from the report (which sits elsewhere): one
    chart per OpenCode line."""
    name = "batch-scale.svg" if line is Line.V1 else f"batch-scale-{line.value}.svg"
    if plan.quick:
        return ROOT / "bench" / f"quick-{name}", f"quick-{name}"
    return ROOT / "docs" / "benchmarks" / name, f"docs/benchmarks/{name}"


def _scale(fleet: SharedFleet, plan: Plan, figure: Figure) -> None:
    """The same batch, larger: throughput should hold and peak RSS grow sub-linearly."""
    env, sizes = fleet.env, plan.batch_scale
    work = env.base / "batch"
    files = {n: _tasks_file(work, n) for n in sizes}
    wall = {n: Series() for n in sizes}
    rate = {n: Series() for n in sizes}
    rss = {n: Series() for n in sizes}
    for _ in range(plan.scale_runs):
        for n in sizes:  # sizes interleaved, so load on the machine spreads over all
            result = _ocm_batch(env, files[n], n)
            wall[n].add(result.wall_s)
            rate[n].add(n / result.wall_s)
            rss[n].add((result.tree_peak_rss or 0) / 2**20)
    first = sizes[0]
    figure.commands.append(
        f"ocm batch tasks-N.jsonl --json   # N = {', '.join(map(str, sizes))}: the cost as the "
        f"work grows, same {len(fleet.instances)} instances"
    )
    for n in sizes:
        base = None if n == first else f"scale_rate_{first}"
        figure.add(f"scale_rate_{n}", f"`ocm batch` throughput, {n} tasks", "tasks/s", rate[n],
                   baseline=base)  # fmt: skip
    for n in sizes:
        base = None if n == first else f"scale_rss_{first}"
        figure.add(f"scale_rss_{n}", f"`ocm batch` peak RSS, {n} tasks", "MB", rss[n],
                   baseline=base)  # fmt: skip
    path, link = chart_path(plan, env.line)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        svg(
            [
                Panel("ocm batch throughput", [(n, rate[n].median) for n in sizes], "tasks/s"),
                Panel("ocm batch peak RSS", [(n, rss[n].median) for n in sizes], "MB"),
            ]
        )
    )
    figure.extra += [
        f"Cost as the work grows ({plan.scale_runs} run(s) of each size, in this order, on "
        "the same 3 instances):",
        "",
        f"| tasks | wall | tasks/s | throughput / {first}-task throughput | peak RSS |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {n} | {wall[n].median:.1f} s | {rate[n].median:.2f} | "
            f"{rate[n].median / rate[first].median:.2f}x | {rss[n].median:.1f} MB |"
            for n in sizes
        ),
        "",
        f"![`ocm batch` throughput and peak RSS against the number of tasks]({link})",
        "",
    ]
    worst = min(rate[n].median / rate[first].median for n in sizes[1:])
    figure.goal(
        f"throughput at {', '.join(map(str, sizes[1:]))} tasks no more than "
        f"{SCALE_TOLERANCE:.0%} below the {first}-task throughput",
        f"lowest {worst:.2f}x",
        worst >= 1 - SCALE_TOLERANCE,
    )
    last = sizes[-1]
    grew = rss[last].median / rss[first].median
    figure.goal(
        f"peak RSS grows sub-linearly: at {last} tasks ({last / first:g}x the work) within "
        f"{RSS_GROWTH_GOAL:g}x the {first}-task peak",
        f"{grew:.2f}x ({rss[first].median:.1f} MB at {first}, {rss[last].median:.1f} MB at "
        f"{last}; {(rss[last].median - rss[first].median) * 1024 / (last - first):.1f} KB per "
        "extra task)",
        grew <= RSS_GROWTH_GOAL,
    )
    figure.notes.append(
        "Peak RSS of `ocm batch`: its process sampled every "
        f"{SAMPLE_INTERVAL * 1000:.0f} ms. A finished task keeps only its status in the "
        "runner's memory (its result is in the registry); what still grows with the work is "
        "the batch's bookkeeping: every task's record is built, stored and read back once at "
        "the start, and the summary at the end lists every task."
    )
