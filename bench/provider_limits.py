"""`python -m bench.provider_limits [--runs N] [--tasks N]`: what provider slots cost.

Two figures, printed as a Markdown section for BENCHMARKS.md:

* the cost of a slot: one lease taken and given back (`Slots.try_take` + `give_back`, two
  `BEGIN IMMEDIATE` transactions on the registry), timed in-process on an idle registry and
  on one where 8 other leases and 8 waiters of the provider are held;
* batch throughput with limits off, on but not binding (`--concurrency 100`), and binding
  (`--concurrency 2`): the same `ocm batch run` of N tasks (`SLEEP 0.5`, the default
  scripted model) on 2 instances at `--per-instance 4` (8 tasks at once without a limit).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from opencode_manager.limits import Lease, Limit, Slots, parse_scope, set_limits
from opencode_manager.models import ProcessIdentity
from opencode_manager.registry import Registry
from opencode_manager.scripted_model import MODEL

from .env import BenchEnv

CYCLES = 300


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return (f"{statistics.median(ordered) * 1000:.2f} ms | {p95 * 1000:.2f} ms | "
            f"{ordered[-1] * 1000:.2f} ms")  # fmt: skip


def slot_cost(crowded: bool) -> list[float]:
    """Seconds per take + give back, `CYCLES` times."""
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "registry.db")
        try:
            set_limits(registry, [Limit(parse_scope("bench"), 100, None)])
            slots = Slots(registry)
            if crowded:  # 8 leases and 8 waiters of other (live-looking) holders
                other = Slots(registry, me=ProcessIdentity(1, 0.0), alive=lambda _: True)
                for n in range(8):
                    other.try_take(other.ticket("bench", None, f"held-{n}"))
                tight = Slots(registry, me=ProcessIdentity(1, 0.0), alive=lambda _: True)
                set_limits(registry, [Limit(parse_scope("bench/other"), 8, None)])
                for n in range(8):
                    tight.try_take(tight.ticket("bench", "bench/other", f"waiting-{n}"))
            took: list[float] = []
            for n in range(CYCLES):
                began = time.perf_counter()
                lease = slots.try_take(slots.ticket("bench", None, f"t-{n}"))
                assert isinstance(lease, Lease), lease
                slots.give_back(lease)
                took.append(time.perf_counter() - began)
            return took
        finally:
            registry.close()


def batch_rate(env: BenchEnv, tasks_file: Path, n: int) -> float:
    """Tasks per second of one `ocm batch run`, checked: every task completed."""
    began = time.monotonic()
    result = env.ocm_run("batch", "run", str(tasks_file), "--per-instance", "4", "--json",
                         timeout=900)  # fmt: skip
    took = time.monotonic() - began
    summary = json.loads(result.stdout)
    if summary["counts"] != {"completed": n}:
        raise SystemExit(f"the batch did not complete: {summary['counts']}")
    return n / took


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.provider_limits")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=16)
    args = parser.parse_args()
    idle, crowded = slot_cost(False), slot_cost(True)
    rates: dict[str, list[float]] = {"off": [], "on, not binding (100)": [], "on, binding (2)": []}
    with BenchEnv() as env:
        env.start_fleet(2)
        tasks = env.base / "tasks.jsonl"
        tasks.write_text("".join(json.dumps({"prompt": f"SLEEP 0.5 bench {i}", "model": MODEL})
                                 + "\n" for i in range(args.tasks)))  # fmt: skip
        batch_rate(env, tasks, args.tasks)  # warm-up
        for _ in range(args.runs):
            for label, limit in (("off", None), ("on, not binding (100)", "100"),
                                 ("on, binding (2)", "2")):  # fmt: skip
                if limit is None:
                    if _has_limit(env):
                        env.ocm_run("limits", "rm", "scripted")
                else:
                    env.ocm_run("limits", "set", "scripted", "--concurrency", limit)
                rates[label].append(batch_rate(env, tasks, args.tasks))
    off = statistics.median(rates["off"])
    out = sys.stdout
    out.write("| what | median | p95 | max | runs |\n|---|---:|---:|---:|---:|\n")
    out.write(f"| slot take + give back, idle registry | {_ms(idle)} | {CYCLES} |\n")
    out.write(
        f"| slot take + give back, 8 leases and 8 waiters held | {_ms(crowded)} | {CYCLES} |\n"
    )
    head = f"batch of {args.tasks} tasks, 2 instances x 4"
    out.write(f"\n| {head} | tasks/s median | min | max | runs | ratio to off |\n"
              "|---|---:|---:|---:|---:|---|\n")  # fmt: skip
    for label, values in rates.items():
        med = statistics.median(values)
        out.write(f"| limits {label} | {med:.2f} | {min(values):.2f} | {max(values):.2f} | "
                  f"{len(values)} | {med / off:.2f}x |\n")  # fmt: skip


def _has_limit(env: BenchEnv) -> bool:
    return any(r["scope"] == "scripted" for r in env.ocm_json("limits"))


if __name__ == "__main__":
    main()
