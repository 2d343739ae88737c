"""3. Fleet start: `ocm start -n 3` until healthy, against raw `opencode serve` processes."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable

from ..env import ROOT, BenchEnv
from ..measure import BenchError, Series, check, run_command
from ..plan import Plan
from ..report import Figure, timed_ratio_goal

COUNT = 3


def _ocm_start(env: BenchEnv) -> float:
    result = check(
        run_command(
            [
                env.ocm,
                "start",
                "-n",
                str(COUNT),
                "--dir",
                str(env.project),
                *env.model_args(),
                "--json",
            ],
            env=env.env,
            cwd=env.project,
            gnu_time=False,
            timeout=300,
        ),
        "ocm start",
    )
    rows = json.loads(result.stdout)
    if len(rows) != COUNT or any(r["status"] != "running" for r in rows):
        raise BenchError(f"ocm start: not all running: {[r['status'] for r in rows]}")
    env.forget_all()  # stop --all, then rm: the next start begins from the same state
    return result.wall_s


def _raw(env: BenchEnv, *options: str) -> float:
    """Seconds from the first spawn to all healthy, as the raw script measured it."""
    server_env = env.server_env(
        OPENCODE_SERVER_PASSWORD=secrets.token_urlsafe(24), PYTHONPATH=str(ROOT)
    )
    proc = subprocess.Popen(
        [env.python, "-m", "bench.raw_fleet", "--count", str(COUNT), *options, env.opencode],
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
    figure = Figure(
        3,
        f"Fleet start: {COUNT} instances until all are healthy",
        commands=[
            f"ocm start -n {COUNT} --dir PROJECT --env OPENCODE_CONFIG_CONTENT=... "
            "--env OPENCODE_DISABLE_MODELS_FETCH=1 --json",
            f"python -m bench.raw_fleet --count {COUNT} OPENCODE            "
            "# raw limit: all spawned at once",
            f"python -m bench.raw_fleet --count {COUNT} --serial OPENCODE   # one after another",
            f"python -m bench.raw_fleet --count {COUNT} --private-dirs DIR OPENCODE   "
            "# at once, fresh private data dirs",
            "# between runs: ocm stop --all; ocm rm NAMES  /  "
            "raw servers ended by their Popen PIDs",
        ],
    )
    ocm, parallel, serial, private = Series(), Series(), Series(), Series()
    private_base = env.base / "raw-private"

    def raw_private() -> float:
        shutil.rmtree(private_base, ignore_errors=True)
        return _raw(env, "--private-dirs", str(private_base))

    rounds: list[tuple[Series, Callable[[], float]]] = [
        (ocm, lambda: _ocm_start(env)),
        (serial, lambda: _raw(env, "--serial")),
        (parallel, lambda: _raw(env)),
        (private, raw_private),
    ]
    # Warm-up, serial before parallel: the first server in a fresh HOME sets up its data dir
    # (page cache, OpenCode's first-run setup), which parallel servers sharing it would race.
    for _, measure in rounds:
        measure()
    for _ in range(plan.runs):
        for series, measure in rounds:
            series.add(measure())
            time.sleep(0.5)  # let the ended servers' ports and CPU settle between runs

    figure.add("ocm", f"`ocm start -n {COUNT}`", "s", ocm, baseline="parallel")
    figure.add("parallel", "raw, all at once (limit)", "s", parallel)
    figure.add("ocm_serial", f"`ocm start -n {COUNT}` vs serial", "s", ocm, baseline="serial")
    figure.add("serial", "raw, one after another", "s", serial)
    figure.add(
        "private", "raw, all at once, fresh private data dirs", "s", private, baseline="parallel"
    )
    timed_ratio_goal(
        figure, "ocm", "parallel", 1.15, f"`ocm start -n {COUNT}` wall", "{:.3f} s".format
    )
    figure.notes += [
        "`ocm start`: wall of the whole command, interpreter start included; it returns when "
        "every instance answered its health check. Each instance gets fresh private data "
        "dirs (the `rm` between runs deletes them) and a password.",
        "Raw: seconds from the first spawn to the last healthy answer, measured inside the "
        "script (its interpreter start excluded, so the limit is not weakened). The servers "
        "share the run's HOME data dir, as a user's would (warm after the first run), and "
        "have a password; health polled every 10 ms.",
        "The 'fresh private data dirs' row is for context: the raw limit with the same "
        "isolation ocm gives each instance.",
        "Runs rotate through the four variants.",
    ]
    return figure
