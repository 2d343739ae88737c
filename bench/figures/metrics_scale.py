"""9. Metrics at scale: `ocm metrics` and a `metrics --serve` scrape over 100,000 task records,
against the same over 100.

The registries are filled as figure 7 fills its own (`registry_scale.fill`: through the
library's `TaskStore`, so the running totals are kept as `ocm run` and `ocm batch` keep them).
The scrape is what Prometheus pays at every interval for as long as `metrics --serve` runs;
it used to read every record, so it grew with the history (2.2 s at 100,000 on main).
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from ..env import BenchEnv, wait_for_line
from ..measure import BenchError, Series, check, run_command
from ..plan import Plan
from ..report import Figure, timed_ratio_goal
from .registry_scale import Scale, fill

GOAL_RATIO = 1.2  # at 100,000 records at most 1.2x the cost at 100
SMALL = Scale(100, 1)  # 90 tasks in one batch, 10 standalone
_TASKS = re.compile(r'^ocm_tasks\{status="[a-z_]+"\} ([0-9.e+]+)$', re.MULTILINE)


def scale_for(plan: Plan) -> Scale:
    return Scale(10_000, 100) if plan.quick else Scale(100_000, 1_000)


def _home(env: BenchEnv, name: str) -> tuple[Path, dict[str, str]]:
    home = env.base / name
    home.mkdir()
    return home, {**env.env, "OCM_HOME": str(home)}


def _counted(exposition: str, expect: int, what: str) -> None:
    """The exposition's task counts add up to the records filled: it read the right registry."""
    total = sum(float(value) for value in _TASKS.findall(exposition))
    if round(total) != expect:
        raise BenchError(f"{what}: ocm_tasks adds up to {total:g}, expected {expect}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(env: BenchEnv, environ: dict[str, str], name: str) -> tuple[Any, str]:
    """`ocm metrics --serve PORT` in the background (ended by its Popen handle); its URL."""
    out = env.base / f"{name}.log"
    proc = env.spawn([env.ocm, "metrics", "--serve", str(_free_port())], out, env=environ)
    match = wait_for_line(out, r"serving metrics on (http://\S+)", proc)
    return proc, match.group(1)


def run(env: BenchEnv, plan: Plan) -> Figure:
    scale = scale_for(plan)
    figure = Figure(
        9,
        f"Metrics at scale: {scale.tasks:,} task records against {SMALL.tasks}",
        commands=[
            "ocm metrics                 # the Prometheus text once",
            "ocm metrics --serve PORT    # then GET /metrics, timed in the client",
        ],
    )
    big_home, big_env = _home(env, "ocm-metrics")
    small_home, small_env = _home(env, "ocm-metrics-baseline")
    began = time.monotonic()
    fill(big_home, scale, now=time.time())
    fill_s = time.monotonic() - began
    fill(small_home, SMALL, now=time.time())
    homes = (("big", big_env, scale.tasks), ("small", small_env, SMALL.tasks))

    command = {key: Series() for key, _, _ in homes}
    for i in range(plan.cli_runs + 1):
        for key, environ, count in homes:
            result = check(
                run_command([env.ocm, "metrics"], env=environ, cwd=env.project),
                "ocm metrics",
            )
            _counted(result.stdout, count, f"ocm metrics ({key})")
            if i:  # the first round warms the page cache and is not counted
                command[key].add(result.wall_s)

    scrapes = 10 if plan.quick else 50
    scrape = {key: Series() for key, _, _ in homes}
    servers = {key: _serve(env, environ, f"metrics-{key}") for key, environ, _ in homes}
    try:
        with httpx.Client(timeout=30.0) as http:
            for i in range(scrapes + 1):
                for key, _, count in homes:
                    url = servers[key][1]
                    start = time.perf_counter()
                    response = http.get(url)
                    took = time.perf_counter() - start
                    response.raise_for_status()
                    _counted(response.text, count, f"scrape ({key})")
                    if i:
                        scrape[key].add(took * 1000)
    finally:
        for proc, _ in servers.values():
            env.end(proc)

    figure.add("scrape", f"scrape of `metrics --serve`, {scale.tasks:,} tasks", "ms",
               scrape["big"], baseline="scrape_0")  # fmt: skip
    figure.add("scrape_0", f"scrape, {SMALL.tasks} tasks", "ms", scrape["small"])
    figure.add("command", f"`ocm metrics`, {scale.tasks:,} tasks", "s", command["big"],
               baseline="command_0")  # fmt: skip
    figure.add("command_0", f"`ocm metrics`, {SMALL.tasks} tasks", "s", command["small"])
    for key, what, show in (
        ("scrape", "a scrape", "{:.2f} ms".format),
        ("command", "`ocm metrics`", "{:.3f} s".format),
    ):
        timed_ratio_goal(figure, key, f"{key}_0", GOAL_RATIO, f"{what} with {scale.tasks:,} tasks",
                         show)  # fmt: skip
    figure.notes += [
        f"Both registries filled through `TaskStore` as in figure 7 ({scale.label} over 30 "
        f"days; the baseline's {SMALL.tasks} tasks: one batch of 90 and 10 alone); filling the "
        f"large one took {fill_s:.1f} s. No instance is "
        "registered, so the frame part of the reading is the same small cost in both.",
        f"Scrapes: {scrapes} per registry after one unmeasured, alternating between two "
        "`ocm metrics --serve` processes (one per registry), each timed around the HTTP GET "
        "in one client (keep-alive). `ocm metrics`: the whole command (interpreter start "
        f"included), {plan.cli_runs} runs each after one unmeasured round.",
        "Every reading is checked: its `ocm_tasks` counts add up to the records filled.",
        "The totals are kept by the registry as records are written (table `task_totals`, "
        "maintained by triggers in the same transaction as every insert, update and delete "
        "of a task), so a reading is a few rows whatever the history.",
    ]
    return figure
