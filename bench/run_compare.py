"""`python -m bench.run_compare --ocm A --ocm B [--runs N]`: `ocm run` of two builds, and the
curl floor, interleaved on the instance already running in $OCM_HOME; wall and CPU of each.

For comparing a change to `ocm run`'s own overhead with the code before it (another
checkout's `ocm`), on a machine too busy for the full dispatch figure: the rounds are
interleaved, so the load hits every command alike, and each row gives its spread. CPU is the
kernel's account of the waited-for child (getrusage), so it holds better than wall when the
server's turn dominates the wall.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import time
from pathlib import Path

from .figures.dispatch import FLOOR_SCRIPT

PROMPT = "BASH: echo bench"


def _timed(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or "bench" not in done.stdout:
        raise SystemExit(f"{argv[0]} failed: {(done.stderr or done.stdout)[-300:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_compare", description=__doc__)
    parser.add_argument("--ocm", action="append", required=True, help="an ocm executable")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dir", default=".", help="the project directory to run in")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    listed = subprocess.run(
        [args.ocm[0], "ls", "--no-foreign", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    running = [i for i in json.loads(listed.stdout) if i["status"] == "running"]
    if not running:
        raise SystemExit("no running instance in $OCM_HOME: `ocm start` one first")
    instance = running[0]
    home = Path(env.get("OCM_HOME", "."))
    floor_env = {
        **env,
        "OPENCODE_SERVER_URL": instance["url"],
        "OPENCODE_SERVER_USERNAME": "opencode",
        "OPENCODE_SERVER_PASSWORD": (home / "secrets" / f"{instance['name']}.password")
        .read_text()
        .strip(),
    }
    commands = {f"ocm run ({path})": ([path, "run", PROMPT], env) for path in args.ocm}
    commands["curl floor"] = (["bash", "-c", FLOOR_SCRIPT], floor_env)
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(args.runs + 1):  # the first round warms up and is not counted
        for name, (argv, environ) in commands.items():
            wall, cpu = _timed(argv, environ, args.dir)
            if round_:
                walls[name].append(wall)
                cpus[name].append(cpu)
    floor = statistics.median(walls["curl floor"])
    for name in commands:
        w, c = walls[name], cpus[name]
        print(
            f"{name}: wall p50 {statistics.median(w) * 1000:.0f} ms "
            f"[{min(w) * 1000:.0f}-{max(w) * 1000:.0f}] ({statistics.median(w) / floor:.2f}x "
            f"floor), CPU p50 {statistics.median(c) * 1000:.0f} ms "
            f"[{min(c) * 1000:.0f}-{max(c) * 1000:.0f}]"
        )


if __name__ == "__main__":
    main()
