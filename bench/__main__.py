"""`python -m bench [--quick] [--runs N] [--opencode VERSION|PATH]`: run every figure, write
the report. The figures that talk to a server (dispatch, batch, fleet start, CLI, monitor,
footprint, first task) are measured on each OpenCode line in turn (the pinned 1.x and 2.x
versions scripts/setup installs), each against its own line's baselines (`opencode run
--attach` and `/session` on 1.x, `opencode run --server` and `/api/...` on 2.x); the report
puts their goals side by side. `--opencode` (repeatable) measures only the lines given."""

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

from .env import DEFAULT_LINES, ROOT, BenchEnv, resolve_opencode
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
from .measure import QUIET_CPU, QUIET_DEADLINE, BenchError, cpu_model, load_average, settle
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
#: Figures measured once per OpenCode line (they talk to servers); the rest once per run.
PER_LINE = frozenset({1, 2, 3, 4, 5, 6, 8})


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def attempt(
    number: int, body: Callable[[], Figure], *, quiet_first: bool = True, line: str | None = None
) -> Figure:
    """Run one figure (on a quiet machine, unless told not to wait for one); a crash becomes
    a figure that says so (and a non-zero exit). `line`: the OpenCode version it measures,
    for a figure measured on each line."""
    on = f" (OpenCode {line})" if line else ""
    log(f"{number}. {TITLES[number]}{on} ...")
    waited, quiet = settle() if quiet_first else (0.0, True)
    began = time.monotonic()
    load = os.getloadavg()[0]
    try:
        figure = body()
    except Exception as exc:
        traceback.print_exc()
        figure = Figure(number, TITLES[number], error=f"{exc.__class__.__name__}: {exc}")
    figure.line = line
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
        f"{number}. {TITLES[number]}{on}: {'crashed' if figure.error else 'done'} in "
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


def header(
    command: str, versions: list[str], plan: Plan, load_start: str, foreign: int, revision: str
) -> list[str]:
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
        f"| OpenCode | {', '.join(versions)} (the figures that talk to a server: on each) |",
        f"| Python | {platform.python_version()} ({sys.executable}) |",
        f"| opencode-manager | {opencode_manager.__version__}, git {revision} |",
        f"| runs per figure | {plan.runs} (batch and fixed-rate monitor: {plan.batch_runs}, "
        f"`ocm batch` against the REST floor: {plan.floor_runs}, CLI: {plan.cli_runs}) |",
        f"| load average at start (1, 5, 15 min) | {load_start} |",
        f"| other `opencode serve` processes on the machine at start | {foreign} |",
        "",
    ]


def measure_line(env: BenchEnv, plan: Plan, wanted: set[int], line: str | None) -> list[Figure]:
    """The figures that talk to a server, on `env`'s OpenCode line (`line` labels them when
    more than one line is measured)."""
    figures: list[Figure] = []

    def measure(number: int, body: Callable[[], Figure]) -> None:
        if number in wanted:
            figures.append(attempt(number, body, quiet_first=not plan.quick, line=line))

    measure(3, lambda: fleet_start.run(env, plan))
    measure(8, lambda: first_task.run(env, plan))
    shared: SharedFleet | None = None
    try:
        if wanted & {1, 2, 4, 6}:
            shared = SharedFleet.start(env)
    except Exception as exc:
        traceback.print_exc()
        for number in sorted(wanted & {1, 2, 4, 6}):
            failed = Figure(number, TITLES[number], error=f"the shared fleet did not start: {exc}")
            failed.line = line
            figures.append(failed)
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
        figures.append(Figure(5, TITLES[5], line=line, notes=["Not measured on OpenCode 2.x yet."]))
    return figures


def measure_once(env: BenchEnv, plan: Plan, wanted: set[int]) -> list[Figure]:
    """The figures no server takes part in (the registry, the read commands): once a run."""
    figures: list[Figure] = []
    bodies: dict[int, Callable[[], Figure]] = {
        7: lambda: registry_scale.run(env, plan),
        9: lambda: metrics_scale.run(env, plan),
        10: lambda: reads.run(env, plan),
    }
    for number, body in bodies.items():
        if number in wanted:
            figures.append(attempt(number, body, quiet_first=not plan.quick))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (CI): writes bench/quick-report.md"
    )
    parser.add_argument("--runs", type=int, help="measured runs per figure")
    parser.add_argument("--out", type=Path, help="where to write the report")
    parser.add_argument(
        "--opencode",
        action="append",
        metavar="VERSION|PATH",
        help="an OpenCode to measure (repeatable): a version scripts/setup installed in "
        ".cache/ocm (e.g. 2.1.2 for the 2.x line) or a path (default: the pinned version of "
        f"each line, {' and '.join(DEFAULT_LINES)})",
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
    revision = git_revision()  # what is measured: the tree as the run begins
    wanted = set(args.only or TITLES)
    try:
        binaries = [resolve_opencode(choice) for choice in args.opencode or DEFAULT_LINES]
    except BenchError as exc:
        parser.error(str(exc))
    leftovers: list[str] = []
    figures: list[Figure] = []
    versions: list[str] = []
    foreign = 0
    for index, binary in enumerate(binaries):
        if index > 0 and not wanted & PER_LINE:
            break  # nothing left that a line changes
        with BenchEnv(binary) as env:
            version = env.opencode_version()
            versions.append(version)
            log(f"OpenCode {version}: isolated in {env.base}; scripted model at {env.model_url}")
            if index == 0:
                foreign = other_servers(env)
            figures += measure_line(env, plan, wanted, version if len(binaries) > 1 else None)
            if index == 0:  # the figures no server takes part in: once
                figures += measure_once(env, plan, wanted)
            leftovers += env.close()
    top = header(command, versions, plan, load_start, foreign, revision)
    elapsed = time.monotonic() - began
    footer = [
        f"Total run time: {elapsed / 60:.1f} min. Load average at the end: {load_average()}.",
    ]
    if leftovers:
        footer.append(f"Processes left behind and killed at the end: {leftovers}")
    order = {version: i for i, version in enumerate(versions)}
    titled = sorted(figures, key=lambda f: (f.number, order.get(f.line or "", -1)))
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
