"""8. First task: the first `ocm run` on a freshly started instance against a warm one, with the
keeper's warm-up (the default) and without it, and what the warm-up adds to `ocm start`."""

from __future__ import annotations

import statistics
import time

from ..env import BenchEnv
from ..measure import Series, check, run_command
from ..plan import Plan
from ..report import Figure, timed_ratio_goal
from .fleet_start import start_instances

PROMPT = "BASH: echo bench"
WARM_TASKS = 3  # after the first task: the warm figure of a run is their median


def _default_env(env: BenchEnv, *, warm: bool) -> dict[str, str]:
    """ocm's default settings: the bench's catalogue switch removed (OpenCode tries models.dev,
    which this offline machine cannot reach), the warm-up on unless told otherwise."""
    run_env = {k: v for k, v in env.env.items() if k != "OPENCODE_DISABLE_MODELS_FETCH"}
    if not warm:
        run_env["OCM_WARMUP_TIMEOUT"] = "0"
    return run_env


def _one(env: BenchEnv, *, warm: bool) -> tuple[float, float, float]:
    """(start wall, first task wall, median warm task wall) on one fresh instance."""
    run_env = _default_env(env, warm=warm)
    config = f"OPENCODE_CONFIG_CONTENT={env.config_content}"
    start = start_instances(env, ["--dir", str(env.project), "--env", config], run_env, 1)
    tasks = []
    for _ in range(1 + WARM_TASKS):
        result = check(
            run_command([env.ocm, "run", PROMPT], env=run_env, cwd=env.project, gnu_time=False),
            "ocm run",
            expect="bench",
        )
        tasks.append(result.wall_s)
    env.forget_all()  # stop, then rm: the next run starts a fresh instance with fresh dirs
    return start.wall_s, tasks[0], statistics.median(tasks[1:])


def run(env: BenchEnv, plan: Plan) -> Figure:
    figure = Figure(
        8,
        "First task on a fresh instance: ready (warmed up) against merely healthy",
        commands=[
            "ocm start --dir PROJECT --env OPENCODE_CONFIG_CONTENT=... --json   "
            "# default settings: warm-up on, models.dev fetch not disabled",
            f'ocm run "{PROMPT}"   # the first task, then {WARM_TASKS} more (warm)',
            "OCM_WARMUP_TIMEOUT=0 ocm start ...; ocm run ...   # the same, warm-up off",
            "# between runs: ocm stop --all; ocm rm NAME (its private dirs go too)",
        ],
    )
    first, warm_task, start_ready = Series(), Series(), Series()
    cold_first, cold_warm, start_healthy = Series(), Series(), Series()
    _one(env, warm=True)  # the page cache and the user's config dir, once
    for _ in range(plan.runs):
        for warm, (starts, firsts, warms) in (
            (True, (start_ready, first, warm_task)),
            (False, (start_healthy, cold_first, cold_warm)),
        ):
            began, one, rest = _one(env, warm=warm)
            starts.add(began)
            firsts.add(one)
            warms.add(rest)
            time.sleep(0.5)  # let the ended server's CPU settle between runs

    figure.add("first", "first task, warmed-up instance (default)", "s", first, baseline="warm")
    figure.add("warm", "a warm task (median of the next 3), same instances", "s", warm_task)
    figure.add("cold_first", "first task, warm-up off", "s", cold_first, baseline="cold_warm")
    figure.add("cold_warm", "a warm task, warm-up off", "s", cold_warm)
    figure.add("ready", "`ocm start`, until ready (default)", "s", start_ready,
               baseline="healthy")  # fmt: skip
    figure.add("healthy", "`ocm start`, until healthy (warm-up off)", "s", start_healthy)
    timed_ratio_goal(
        figure, "first", "warm", 1.5, "first task on a fresh instance", "{:.3f} s".format
    )
    figure.notes += [
        "Walls of whole `ocm` commands, interpreter start included, on the scripted model. "
        "Each run starts one fresh instance (fresh private data, state and cache dirs) with "
        "default settings: models.dev is not disabled, so OpenCode's catalogue refresh "
        "fails in the background on this offline machine and it uses its built-in snapshot.",
        "The warm-up (keeper/warmup.py) makes read-only calls only. What it cannot reach is "
        "the session runner's own first boot (its file watcher, tools and location services, "
        "which no read-only endpoint of OpenCode 1.18.33 builds) and the first model stream: "
        "the rest of the first task's extra time (bench/NOTES.md lists what was tried).",
        "Runs alternate: warm-up on, warm-up off.",
    ]
    return figure
