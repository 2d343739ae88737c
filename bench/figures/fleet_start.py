"""3. Fleet start: `ocm start -n N` (N = 1, 3, 6) until ready, and until merely healthy (warm-up
off), against N raw `opencode serve` processes spawned at once."""

from __future__ import annotations

import functools
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable

from ..env import ROOT, BenchEnv
from ..measure import BenchError, CommandResult, Series, check, run_command
from ..plan import Plan
from ..report import Figure, timed_ratio_goal

COUNT = 3  # the fleet of the serial and private-dirs context rows
COUNTS = (1, 3, 6)
QUICK_COUNTS = (1, 3)


def start_instances(
    env: BenchEnv, args: list[str], run_env: dict[str, str], count: int
) -> CommandResult:
    """`ocm start ARGS --json`, checked: `count` instances, all running."""
    result = check(
        run_command(
            [env.ocm, "start", *args, "--json"],
            env=run_env,
            cwd=env.project,
            gnu_time=False,
            timeout=300,
        ),
        "ocm start",
    )
    rows = json.loads(result.stdout)
    if len(rows) != count or any(r["status"] != "running" for r in rows):
        raise BenchError(f"ocm start: not all running: {[r['status'] for r in rows]}")
    return result


def _ocm_start(
    env: BenchEnv, count: int = COUNT, *, warm: bool = True, each: Series | None = None
) -> float:
    """Wall of `ocm start -n COUNT`: until ready (the default), or healthy (warm-up off).
    With `each`, every instance's seconds from the command's start to its `running` row."""
    run_env = env.env if warm else {**env.env, "OCM_WARMUP_TIMEOUT": "0"}
    args = ["-n", str(count), "--dir", str(env.project), *env.model_args()]
    began = time.time()
    result = start_instances(env, args, run_env, count)
    if each is not None:
        for row in json.loads(result.stdout):
            each.add(float(row["started_at"]) - began)
    env.forget_all()  # stop --all, then rm: the next start begins from the same state
    return result.wall_s


def _raw(env: BenchEnv, *options: str, count: int = COUNT) -> float:
    """Seconds from the first spawn to all healthy, as the raw script measured it."""
    server_env = env.server_env(
        OPENCODE_SERVER_PASSWORD=secrets.token_urlsafe(24), PYTHONPATH=str(ROOT)
    )
    proc = subprocess.Popen(
        [
            env.python,
            "-m",
            "bench.raw_fleet",
            "--count",
            str(count),
            *options,
            "--line",
            str(env.line.value),
            env.opencode,
        ],
        env=server_env,
        cwd=str(env.project),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        if not line:
            raise BenchError(f"raw fleet script failed: {proc.communicate()[1].strip()[-400:]}")
        data = json.loads(line)
    finally:
        proc.stdin.close()  # the script ends its servers by their Popen handles, then exits
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise BenchError(f"raw fleet script exited {proc.returncode}")
    return float(data["elapsed_s"])


def run(env: BenchEnv, plan: Plan) -> Figure:
    counts = QUICK_COUNTS if plan.quick else COUNTS
    figure = Figure(
        3,
        f"Fleet start: {', '.join(map(str, counts))} instances until ready, and until healthy",
        commands=[
            "ocm start -n N --dir PROJECT --env OPENCODE_CONFIG_CONTENT=... "
            "--env OPENCODE_DISABLE_MODELS_FETCH=1 --json   # ready: warmed up (the default)",
            "OCM_WARMUP_TIMEOUT=0 ocm start -n N ...   # healthy only: warm-up off",
            "python -m bench.raw_fleet --count N OPENCODE            "
            "# raw limit: all spawned at once",
            f"python -m bench.raw_fleet --count {COUNT} --serial OPENCODE   # one after another",
            f"python -m bench.raw_fleet --count {COUNT} --private-dirs DIR OPENCODE   "
            "# at once, fresh private data dirs",
            "# between runs: ocm stop --all; ocm rm NAMES  /  "
            "raw servers ended by their Popen PIDs",
        ],
    )
    ready = {n: Series() for n in counts}
    each = {n: Series() for n in counts}  # every instance of every measured run
    healthy = {n: Series() for n in counts}
    parallel = {n: Series() for n in counts}
    serial, private = Series(), Series()
    private_base = env.base / "raw-private"

    def raw_private() -> float:
        shutil.rmtree(private_base, ignore_errors=True)
        return _raw(env, "--private-dirs", str(private_base))

    rounds: list[tuple[Series, Callable[[], float]]] = [(serial, lambda: _raw(env, "--serial"))]
    for n in counts:
        rounds += [
            (ready[n], functools.partial(_ocm_start, env, n, each=each[n])),
            (healthy[n], functools.partial(_ocm_start, env, n, warm=False)),
            (parallel[n], functools.partial(_raw, env, count=n)),
        ]
    rounds.append((private, raw_private))
    # Warm-up, serial before parallel: the first server in a fresh HOME sets up its data dir
    # (page cache, OpenCode's first-run setup), which parallel servers sharing it would race.
    for _, measure in rounds:
        measure()
    for series in each.values():
        series.values.clear()  # the warm-up's instances are not counted
    for _ in range(plan.runs):
        for series, measure in rounds:
            series.add(measure())
            time.sleep(0.5)  # let the ended servers' ports and CPU settle between runs

    for n in counts:
        figure.add(f"ready{n}", f"`ocm start -n {n}`, until ready", "s", ready[n],
                   baseline=f"parallel{n}")  # fmt: skip
        figure.add(f"healthy{n}", f"`ocm start -n {n}`, until healthy (warm-up off)", "s",
                   healthy[n], baseline=f"parallel{n}")  # fmt: skip
        figure.add(f"parallel{n}", f"raw, {n} at once (limit)", "s", parallel[n])
        figure.add(f"each{n}", f"`ocm start -n {n}`, each instance ready", "s", each[n])
    figure.add("serial", f"raw, {COUNT} one after another", "s", serial)
    figure.add(
        "private",
        f"raw, {COUNT} at once, fresh private data dirs",
        "s",
        private,
        baseline=f"parallel{COUNT}",
    )
    for n in counts:
        timed_ratio_goal(
            figure,
            f"healthy{n}",
            f"parallel{n}",
            1.15,
            f"`ocm start -n {n}` until healthy",
            "{:.3f} s".format,
        )
    figure.notes += [
        "`ocm start`: wall of the whole command, interpreter start included. By default it "
        "returns when every instance is ready: healthy, then warmed up by its keeper (GET "
        "/config, /agent, /config/providers with its directory), so a first "
        "prompt does not pay for the directory's bootstrap and the provider catalogue. "
        "'until healthy' is the same command with OCM_WARMUP_TIMEOUT=0: the like-for-like "
        "comparison with the raw limit, which only waits for health; the difference between "
        "the two rows is the warm-up (what figure 8 shows it buys). Each instance gets "
        "fresh private data dirs (the `rm` between runs deletes them) and a password.",
        "Both `ocm start` rows end with the command asking each server whether it can load "
        "the project's config (GET /config with the directory: the warning for a broken "
        "opencode.json). With the warm-up on, the keeper has already made that call; with "
        "it off, this call bootstraps the directory (about 0.3 s of the 'until healthy' "
        "rows). bench/NOTES.md has the rest of the breakdown.",
        "Raw: seconds from the first spawn to the last healthy answer, measured inside the "
        "script (its interpreter start excluded, so the limit is not weakened). The servers "
        "share the run's HOME data dir, as a user's would (warm after the first run), and "
        "have a password; health polled every 10 ms.",
        "The 'fresh private data dirs' row is for context: the raw limit with the same "
        "isolation ocm gives each instance.",
        "'each instance ready': for every instance of every measured run, the seconds from "
        "the command's start to the moment its keeper recorded it running (ready), so the "
        "p95 and p99 are of single instances, not of whole commands.",
        "Runs rotate through all the variants, one of each per round.",
    ]
    return figure
