"""`python -m bench [--quick] [--runs N] [--opencode VERSION|PATH]`: run every figure, write
the report. `--opencode` chooses the OpenCode measured, and so its line (default: 1.x's tested
version; `--opencode 2.1.2` measures the 2.x line, its own `opencode run --server` and REST
routes as the baselines)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import psutil

import opencode_manager
from opencode_manager.lines import Line

from .env import ROOT, BenchEnv, resolve_opencode
from .figures import (
    batch,
    cli,
    dispatch,
    first_task,
    fleet_start,
    footprint,
    metrics_scale,
    monitor,
    reads,
    registry_scale,
)
from .measure import QUIET_CPU, QUIET_DEADLINE, cpu_model, load_average, settle
from .plan import Plan, SharedFleet
from .report import Figure, render

FULL_REPORT = ROOT / "BENCHMARKS.md"
QUICK_REPORT = ROOT / "bench" / "quick-report.md"

TITLES = {
    1: "Task dispatch",
    2: "Batch throughput",
    3: "Fleet start",
    4: "CLI overhead",
    5: "Monitor",
    6: "Footprint",
    7: "Registry at scale",
    8: "First task",
    9: "Metrics at scale",
    10: "Read commands",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def attempt(number: int, body: Callable[[], Figure], *, quiet_first: bool = True) -> Figure:
    """Run one figure (on a quiet machine, unless told not to wait for one); a crash becomes
    a figure that says so (and a non-zero exit)."""
    log(f"{number}. {TITLES[number]} ...")
    waited, quiet = settle() if quiet_first else (0.0, True)
    began = time.monotonic()
    load = os.getloadavg()[0]
    try:
        figure = body()
    except Exception as exc:
        traceback.print_exc()
        figure = Figure(number, TITLES[number], error=f"{exc.__class__.__name__}: {exc}")
    if not quiet_first:
        waited_note = ""
    elif quiet:
        waited_note = (
            f" It began after {waited:.0f} s of waiting for the machine's CPU to stay under "
            f"{QUIET_CPU:g}% for a second."
        )
    else:
        waited_note = (
            f" It began after {QUIET_DEADLINE:g} s of waiting for a quiet machine in vain."
        )
    figure.notes.append(
        f"Took {time.monotonic() - began:.0f} s. Load average (1 min) of this "
        f"shared {os.cpu_count()}-core machine: {load:.2f} when the figure "
        f"began, {os.getloadavg()[0]:.2f} when it ended." + waited_note
    )
    log(
        f"{number}. {TITLES[number]}: {'crashed' if figure.error else 'done'} in "
        f"{time.monotonic() - began:.0f} s"
    )
    return figure


def git_revision() -> str:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{revision} (with uncommitted changes)" if git("status", "--porcelain") else revision


def other_servers(env: BenchEnv) -> int:
    """`opencode serve` processes on this machine that are not ours."""
    ours = {p.pid for p in env.marked()}
    count = 0
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if (
            proc.pid not in ours
            and len(cmdline) > 1
            and cmdline[0].endswith("opencode")
            and "serve" in cmdline[1:3]
        ):
            count += 1
    return count


def header(command: str, env: BenchEnv, plan: Plan, load_start: str, foreign: int) -> list[str]:
    memory = psutil.virtual_memory().total / 2**30
    return [
        "# Benchmarks" + (" (quick smoke run: timings not meaningful)" if plan.quick else ""),
        "",
        f"Produced by `{command}` from the repository root on "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. Every figure was measured "
        "on this machine in that one run, against real OpenCode servers on the bundled "
        "scripted model (loopback only). Each row gives p50 (the median), p95 and p99 of its "
        "runs, interpolated between ranks (with few runs, p95 and p99 lie near the slowest "
        "one); ratios are of medians; lower is better for times and memory, higher for rates.",
        "",
        "| machine | |",
        "|---|---|",
        f"| cores | {os.cpu_count()} |",
        f"| memory | {memory:.1f} GiB |",
        f"| CPU | {cpu_model()} |",
        f"| OS | {platform.system()} {platform.release()} |",
        f"| OpenCode | {env.opencode_version()} |",
        f"| Python | {platform.python_version()} ({sys.executable}) |",
        f"| opencode-manager | {opencode_manager.__version__}, git {git_revision()} |",
        f"| runs per figure | {plan.runs} (batch and fixed-rate monitor: {plan.batch_runs}, "
        f"`ocm batch` against the REST floor: {plan.floor_runs}, CLI: {plan.cli_runs}) |",
        f"| load average at start (1, 5, 15 min) | {load_start} |",
        f"| other `opencode serve` processes on the machine at start | {foreign} |",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (CI): writes bench/quick-report.md"
    )
    parser.add_argument("--runs", type=int, help="measured runs per figure")
    parser.add_argument("--out", type=Path, help="where to write the report")
    parser.add_argument(
        "--opencode",
        metavar="VERSION|PATH",
        help="the OpenCode to measure: a version scripts/setup installed in .cache/ocm (e.g. "
        "2.1.2 for the 2.x line) or a path (default: 1.x's tested version)",
    )
    parser.add_argument(
        "--only",
        type=int,
        action="append",
        metavar="N",
        help="measure only figure N (repeatable): for working on one figure",
    )
    parser.add_argument(
        "--no-scale",
        action="store_true",
        help="skip figure 2's larger batches (up to 960 tasks): for a short run on a busy machine",
    )
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if set(args.only or ()) - set(TITLES):
        parser.error(f"--only: the figures are {', '.join(map(str, sorted(TITLES)))}")
    plan = Plan.make(quick=args.quick, runs=args.runs)
    if args.no_scale:
        plan = dataclasses.replace(plan, batch_scale=())
    command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    out = args.out or (QUICK_REPORT if plan.quick else FULL_REPORT)
    began = time.monotonic()
    load_start = load_average()
    figures: dict[int, Figure] = {}
    wanted = set(args.only or TITLES)

    def measure(number: int, body: Callable[[], Figure]) -> None:
        if number in wanted:
            figures[number] = attempt(number, body, quiet_first=not plan.quick)

    leftovers: list[str] = []
    env = BenchEnv(resolve_opencode(args.opencode))
    with env:
        log(f"isolated in {env.base}; scripted model at {env.model_url}")
        foreign = other_servers(env)
        top = header(command, env, plan, load_start, foreign)
        measure(3, lambda: fleet_start.run(env, plan))
        measure(8, lambda: first_task.run(env, plan))
        shared: SharedFleet | None = None
        try:
            if wanted & {1, 2, 4, 6}:
                shared = SharedFleet.start(env)
        except Exception as exc:
            traceback.print_exc()
            for number in (1, 2, 4, 6):
                if number in wanted:
                    figures[number] = Figure(
                        number, TITLES[number], error=f"the shared fleet did not start: {exc}"
                    )
        if shared is not None:
            fleet = shared
            measure(1, lambda: dispatch.run(fleet, plan))
            # The CLI figure before the batch one: the recipe's 24 `opencode run` processes
            # leave the machine loaded for a while, and command start-up times are sensitive.
            measure(4, lambda: cli.run(fleet, plan))
            measure(2, lambda: batch.run(fleet, plan))
            measure(6, lambda: footprint.run(fleet, plan))
            env.ocm_run("stop", "--all", timeout=120)
        if env.line is Line.V1:
            measure(5, lambda: monitor.run(env, plan))
        elif 5 in wanted:  # its probe subscribes to 1.x's /global/event and 1.x event shapes
            figures[5] = Figure(5, TITLES[5], notes=["Not measured on OpenCode 2.x yet."])
        measure(7, lambda: registry_scale.run(env, plan))
        measure(9, lambda: metrics_scale.run(env, plan))
        measure(10, lambda: reads.run(env, plan))
        leftovers = env.close()
    elapsed = time.monotonic() - began
    footer = [
        f"Total run time: {elapsed / 60:.1f} min. Load average at the end: {load_average()}.",
    ]
    if leftovers:
        footer.append(f"Processes left behind and killed at the end: {leftovers}")
    titled = [figures[n] for n in sorted(figures)]
    for figure in titled:
        figure.title = figure.title or TITLES[figure.number]
    out.write_text(render(top, titled, footer))
    crashed = [f.number for f in titled if f.error]
    log(
        f"wrote {out} in {elapsed / 60:.1f} min"
        + (f"; crashed: {crashed}" if crashed else "")
        + (f"; left behind: {leftovers}" if leftovers else "")
    )
    return 1 if crashed or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
