"""4. CLI overhead: `ocm ls --json` and `ocm --help` against the shell status recipe."""

from __future__ import annotations

import json

from opencode_manager.lines import Line

from ..measure import BenchError, Series, check, run_command
from ..plan import Plan, SharedFleet
from ..report import Figure


def status_recipe(line: Line) -> str:
    """What people run today to see their servers: find them, then ask each one for its
    health (2.x's binary is `opencode.exe`, its health route `/api/info`)."""
    binary = "[o]pencode serve" if line is Line.V1 else "[o]pencode\\.exe serve"
    return (
        f"for port in $(ps -eo pid,args | grep \"{binary}\" | grep -o -- '--port [0-9]*' "
        "| awk '$2 > 0 {print $2}'); do curl -s -m 2 "
        f'"http://127.0.0.1:$port{line.health_route}"; echo " $port"; done'
    )


def answered_ports(output: str) -> list[int]:
    """The ports the recipe printed after each answer: an answer may take several lines (a
    server of the other line answers a route it lacks with its web app's HTML)."""
    return [
        int(w[-1]) for w in (line.split() for line in output.splitlines()) if w and w[-1].isdigit()
    ]


LS_GOAL_S = 0.3


def _span(counts: list[int]) -> str:
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def run(fleet: SharedFleet, plan: Plan) -> Figure:
    env = fleet.env
    recipe = status_recipe(env.line)
    figure = Figure(
        4,
        "CLI overhead",
        commands=[
            "ocm ls --json        # with the 3 instances running",
            "ocm --help           # interpreter start and imports",
            f"{recipe}   # run with bash -c",
        ],
    )
    ls_wall, help_wall, recipe_wall = Series(), Series(), Series()
    ls_rss, help_rss, recipe_rss = Series(), Series(), Series()
    listed: list[int] = []
    found: list[int] = []
    ours = {i.name for i in fleet.instances}
    for i in range(plan.cli_runs + 1):
        warm = i > 0  # the first round warms the page cache and is not counted
        result = check(
            run_command([env.ocm, "ls", "--json"], env=env.env, cwd=env.project), "ocm ls --json"
        )
        rows = json.loads(result.stdout)
        running = {r["name"] for r in rows if r["managed"] and r["status"] == "running"}
        if not ours <= running:
            raise BenchError(f"ocm ls --json does not show {sorted(ours)} running: {rows}")
        if warm:
            ls_wall.add(result.wall_s)
            ls_rss.add((result.max_rss_kb or 0) / 1024)
            listed.append(len(rows))
        result = check(
            run_command([env.ocm, "--help"], env=env.env, cwd=env.project),
            "ocm --help",
            expect="Usage",
        )
        if warm:
            help_wall.add(result.wall_s)
            help_rss.add((result.max_rss_kb or 0) / 1024)
        result = check(
            run_command(["bash", "-c", recipe], env=env.env, cwd=env.project),
            "status recipe",
        )
        answers = answered_ports(result.stdout)
        missing = {i.port for i in fleet.instances} - set(answers)
        if missing:
            raise BenchError(
                f"the status recipe did not find ports {sorted(missing)}: {result.stdout[-400:]}"
            )
        if warm:
            recipe_wall.add(result.wall_s)
            recipe_rss.add((result.max_rss_kb or 0) / 1024)
            found.append(len(answers))

    figure.add("ls", "`ocm ls --json` wall", "s", ls_wall, baseline="recipe")
    figure.add("help", "`ocm --help` wall", "s", help_wall, baseline="recipe")
    figure.add("recipe", "shell status recipe wall", "s", recipe_wall)
    figure.add("ls_rss", "`ocm ls --json` peak RSS", "MB", ls_rss, baseline="recipe_rss")
    figure.add("help_rss", "`ocm --help` peak RSS", "MB", help_rss, baseline="recipe_rss")
    figure.add("recipe_rss", "shell status recipe peak RSS", "MB", recipe_rss)
    figure.goal(
        f"`ocm ls --json` under {LS_GOAL_S * 1000:.0f} ms",
        f"{ls_wall.median * 1000:.0f} ms",
        ls_wall.median < LS_GOAL_S,
    )
    figure.notes += [
        "Wall around the whole command; peak RSS from GNU time `%M` (for the recipe: the "
        "largest of bash, ps, grep, awk and the curls).",
        f"`ocm ls --json` listed {_span(listed)} servers ({len(ours)} ours; any others are "
        "`opencode serve` processes of other users of this machine, shown as foreign); the "
        f"recipe asked {_span(found)} servers with a port in their command line for their "
        "health.",
        "The recipe reads only; our servers have passwords, so their health answer is a 401 "
        "(the same round trip). ocm ls also reads the registry, checks PIDs and start times, "
        "memory and CPU, and asks each server for its health with its password.",
        "One unmeasured warm-up round first.",
    ]
    return figure
