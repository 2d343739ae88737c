"""8. First task: the first `ocm run` on a freshly started instance against a warm one, in
wall time and in the server's CPU, with the keeper's warm-up (the default) and without it
(`--no-warm`), on the run's OpenCode line (`python -m bench` measures it on each line); and
what the warm-up adds to `ocm start`."""

from __future__ import annotations

import json
import statistics
import time

import psutil

from ..env import BenchEnv
from ..measure import Series, check, run_command
from ..plan import Plan
from ..report import Figure, timed_ratio_goal
from .fleet_start import start_instances

PROMPT = "BASH: echo bench"
WARM_TASKS = 3  # after the first task: the warm figure of a run is their median


def _default_env(env: BenchEnv) -> dict[str, str]:
    """ocm's default settings: the bench's catalogue switch removed (OpenCode tries models.dev,
    which this offline machine cannot reach)."""
    return {k: v for k, v in env.env.items() if k != "OPENCODE_DISABLE_MODELS_FETCH"}


def _server_cpu(pid: int) -> float:
    """CPU seconds of the server and its ended children (the shell tool's)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def _one(env: BenchEnv, binary: str, *, warm: bool) -> dict[str, float]:
    """One fresh instance: its start's wall, and the first and the median warm task's wall
    and server CPU."""
    run_env = _default_env(env)
    config = f"OPENCODE_CONFIG_CONTENT={env.config_content}"
    args = ["--dir", str(env.project), "--env", config, "--opencode", binary]
    start = start_instances(env, [*args, *(() if warm else ("--no-warm",))], run_env, 1)
    [row] = json.loads(start.stdout)
    walls, cpus = [], []
    for _ in range(1 + WARM_TASKS):
        before = _server_cpu(row["pid"])
        result = check(
            run_command([env.ocm, "run", PROMPT], env=run_env, cwd=env.project, gnu_time=False),
            "ocm run",
            expect="bench",
        )
        walls.append(result.wall_s)
        cpus.append(_server_cpu(row["pid"]) - before)
    env.forget_all()  # stop, then rm: the next run starts a fresh instance with fresh dirs
    return {
        "start": start.wall_s,
        "first": walls[0],
        "warm": statistics.median(walls[1:]),
        "first_cpu": cpus[0],
        "warm_cpu": statistics.median(cpus[1:]),
    }


def run(env: BenchEnv, plan: Plan) -> Figure:
    figure = Figure(
        8,
        "First task on a fresh instance: warmed up against merely healthy",
        commands=[
            "ocm start --dir PROJECT --env OPENCODE_CONFIG_CONTENT=... --opencode BINARY --json"
            "   # default settings: warm-up on, models.dev fetch not disabled",
            f'ocm run "{PROMPT}"   # the first task, then {WARM_TASKS} more (warm); the '
            "server's CPU (psutil, with its ended children) around each",
            "ocm start --no-warm ...; ocm run ...   # the same, warm-up off",
            "# between runs: ocm stop --all; ocm rm NAME (its private dirs go too)",
        ],
    )
    binary = env.opencode
    keys = ("start", "first", "warm", "first_cpu", "warm_cpu")
    on = {k: Series() for k in keys}
    off = {k: Series() for k in keys}
    _one(env, binary, warm=True)  # the page cache and the user's config dir, once
    for _ in range(plan.runs):
        for warm, series in ((True, on), (False, off)):
            for key, value in _one(env, binary, warm=warm).items():
                series[key].add(value)
            time.sleep(0.5)  # let the ended server's CPU settle between runs
    add = figure.add
    add("first", "first task, warmed-up instance (default)", "s", on["first"], baseline="warm")
    add("warm", f"a warm task (median of the next {WARM_TASKS})", "s", on["warm"])
    add("first_cpu", "server CPU of the first task (default)", "s", on["first_cpu"],
        baseline="warm_cpu")  # fmt: skip
    add("warm_cpu", "server CPU of a warm task", "s", on["warm_cpu"])
    add("cold_first", "first task, --no-warm", "s", off["first"], baseline="cold_warm")
    add("cold_warm", "a warm task, --no-warm", "s", off["warm"])
    add("cold_first_cpu", "server CPU of the first task, --no-warm", "s", off["first_cpu"],
        baseline="cold_warm_cpu")  # fmt: skip
    add("cold_warm_cpu", "server CPU of a warm task, --no-warm", "s", off["warm_cpu"])
    add("ready", "`ocm start`, until warm (default)", "s", on["start"], baseline="healthy")
    add("healthy", "`ocm start --no-warm`, until healthy", "s", off["start"])
    show = "{:.3f} s".format
    timed_ratio_goal(figure, "first", "warm", 1.5, "first task", show)
    timed_ratio_goal(figure, "first_cpu", "warm_cpu", 1.5, "first task's server CPU", show)
    figure.notes += [
        "Walls of whole `ocm` commands, interpreter start included, on the scripted model. "
        "Each run starts one fresh instance (fresh private data, state and cache dirs) with "
        "default settings: models.dev is not disabled, so OpenCode's catalogue refresh "
        "fails in the background on this offline machine and it uses its built-in snapshot.",
        "The warm-up (keeper/warmup.py) is two real turns answered by ocm's own model, in "
        "sessions it titles and deletes: a text turn in the project, a shell turn in a "
        "throw-away directory. The difference between the `ocm start` rows is its cost.",
        "Runs alternate: warm-up on, warm-up off.",
    ]
    return figure
