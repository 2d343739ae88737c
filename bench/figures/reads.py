"""10. Read commands: the CPU of each against `ocm --version`, over 10,000 stored records.

A read command prints what the registry holds (a query of a millisecond), so what it costs is
the interpreter, its imports and the printing: `ocm --version` (Python, click and the
package's entry point) is the floor it is held to. The registry is filled as figure 7 fills
its own (`registry_scale.fill`, through the library's `TaskStore`). The commands run in
rounds, `ocm --version` first in each, so every read is compared with a floor measured beside
it on this shared machine.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ..env import BenchEnv
from ..measure import Series, check, run_command
from ..plan import Plan
from ..report import Figure, timed_ratio_goal
from .registry_scale import Scale, fill

GOAL_RATIO = 1.5  # issue 28.2: a read at most 1.5x the CPU of `ocm --version`
SCALE = Scale(10_000, 100)


@dataclass(frozen=True)
class Read:
    key: str
    argv: tuple[str, ...]
    shown: str  # the command as the report shows it (ids as placeholders)
    goal: bool = True  # held to GOAL_RATIO (the rest are shown for what they cost)

    @property
    def label(self) -> str:
        return f"`ocm {self.shown}`"


def reads(task_id: str, batch_id: str) -> list[Read]:
    return [
        Read("results_json", ("results", "--json"), "results --json"),
        Read("results", ("results",), "results"),  # a table on a pipe: no rich either
        Read("result_json", ("result", task_id, "--json"), "result TASK_ID --json"),
        Read("result", ("result", task_id), "result TASK_ID"),
        Read("batch_ls_json", ("batch", "ls", "--json"), "batch ls --json"),
        Read("batch_ls", ("batch", "ls"), "batch ls"),
        Read(
            "batch_show_json", ("batch", "show", batch_id, "--json"), "batch show BATCH_ID --json"
        ),
        Read("worktrees_json", ("worktrees", "--json"), "worktrees --json"),
        Read("ls_json", ("ls", "--json"), "ls --json", goal=False),
    ]


def _a_small_batch(env: BenchEnv, environ: dict[str, str]) -> str:
    """A batch of the usual size (fill's first one has 1,000 tasks: figure 7 shows that)."""
    listed = check(
        run_command([env.ocm, "batch", "ls", "--json"], env=environ, cwd=env.project),
        "ocm batch ls --json",
    )
    return str(json.loads(listed.stdout)[-1]["id"])


def run(env: BenchEnv, plan: Plan) -> Figure:
    figure = Figure(
        10,
        f"Read commands: CPU against `ocm --version`, over {SCALE.label}",
        commands=[
            "ocm --version                 # the floor: Python, click, the entry point",
            "ocm results --json            # the newest 50 (and how many there are)",
            "ocm results                   # the same as a table (rich)",
            "ocm result TASK_ID --json",
            "ocm result TASK_ID            # a table (rich)",
            "ocm batch ls --json",
            "ocm batch ls                  # a table (rich)",
            "ocm batch show BATCH_ID --json   # a batch of about 80 tasks",
            "ocm worktrees --json",
            "ocm ls --json                 # no instance registered; foreign servers, if any",
        ],
    )
    home = env.base / "ocm-reads"
    home.mkdir()
    environ = {**env.env, "OCM_HOME": str(home)}  # bytecode caches written: see BenchEnv
    task_id, _ = fill(home, SCALE, now=time.time())
    batch_id = _a_small_batch(env, environ)
    commands = reads(task_id, batch_id)
    floor = Series()
    cpu = {c.key: Series() for c in commands}
    for i in range(plan.cli_runs + 1):
        warm = i > 0  # the first round writes the bytecode caches and warms the page cache
        result = check(
            run_command([env.ocm, "--version"], env=environ, cwd=env.project, gnu_time=False),
            "ocm --version",
        )
        if warm:
            floor.add(result.cpu_s * 1000)
        for command in commands:
            result = check(
                run_command([env.ocm, *command.argv], env=environ, cwd=env.project, gnu_time=False),
                f"ocm {' '.join(command.argv[:2])}",
            )
            if warm:
                cpu[command.key].add(result.cpu_s * 1000)
    for command in commands:
        figure.add(command.key, f"{command.label} CPU", "ms", cpu[command.key], baseline="floor")
    figure.add("floor", "`ocm --version` CPU", "ms", floor)
    for command in commands:
        if command.goal:
            timed_ratio_goal(
                figure, command.key, "floor", GOAL_RATIO, f"{command.label} CPU",
                lambda v: f"{v:.1f} ms",
            )  # fmt: skip
    figure.notes += [
        "CPU: user + system time of the command's process, from the kernel's accounting "
        "(getrusage of the waited-for child), in rounds: `ocm --version`, then each read, "
        f"{plan.cli_runs} rounds after one unmeasured one; output piped.",
        f"The registry holds {SCALE.label} (10% standalone, the rest in batches; each "
        "record as the runner writes it); no instance is "
        "registered, so `ocm ls --json` shows foreign servers only (it looks for them "
        "among the machine's processes: what it costs depends on how many there are).",
        "The tables (`results`, `result`, `batch ls` without --json) print to a pipe "
        "without loading rich (cli/plain.py: rich's own layout, byte for byte, for plain "
        "cells); at a terminal, rich lays them out (about 40 ms of imports).",
    ]
    return figure
