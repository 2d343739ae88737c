"""7. Registry at scale: read commands over 100,000 task records and 1,000 batches.

The registry is filled through the library's own store (`TaskStore.add_batch`, `.add`), so
every row is exactly what `ocm run` and `ocm batch` write; then each command is timed as a
whole process, against the same commands on a registry with one task and one batch.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from opencode_manager.models import BatchStatus, TaskRecord, TaskStatus
from opencode_manager.registry import Registry
from opencode_manager.tasks.store import Batch, TaskStore

from ..env import BenchEnv
from ..measure import BenchError, Series, check, run_command
from ..plan import Plan
from ..report import Figure

GOAL_S = 0.3
BIG_BATCH = 1_000  # one batch this large, for `ocm batch show` and the growth figure
SPAN_S = 30 * 86_400.0  # the records' creation times spread over 30 days
STANDALONE_SHARE = 0.1  # tasks run with `ocm run` rather than in a batch
TOOL_CALLS = [
    {
        "tool": "bash",
        "status": "completed",
        "title": "pytest -q tests/test_pages.py",
        "input": {"command": "pytest -q tests/test_pages.py"},
    },
    {"tool": "edit", "status": "completed", "title": "src/pages.py",
     "input": {"filePath": "src/pages.py"}},
]  # fmt: skip
TOKENS = {"input": 12_000, "output": 800, "reasoning": 0, "cache": {"read": 9_000, "write": 0}}
ANSWER = (
    "I ran the command and it printed the expected output. The failing test was caused by an "
    "off-by-one error in the pagination helper; I changed the loop bound and added a test for "
    "the empty page. All 214 tests pass now."
)


@dataclass(frozen=True)
class Scale:
    tasks: int
    batches: int

    @property
    def label(self) -> str:
        return f"{self.tasks:,} tasks, {self.batches:,} batches"


def scale_for(plan: Plan) -> Scale:
    return Scale(10_000, 100) if plan.quick else Scale(100_000, 1_000)


def _record(
    rng: random.Random, task_id: str, at: float, batch_id: str | None, n: int
) -> TaskRecord:
    """A finished task as the runner leaves it: mostly completed, some failed or timed out."""
    roll = rng.random()
    status = (
        TaskStatus.COMPLETED
        if roll < 0.9
        else TaskStatus.FAILED
        if roll < 0.97
        else TaskStatus.TIMED_OUT
    )
    took = rng.uniform(2.0, 90.0)
    error = None
    if status is TaskStatus.FAILED:
        error = {"name": "APIError", "message": "provider returned 529: overloaded", "data": {}}
    elif status is TaskStatus.TIMED_OUT:
        error = {"name": "timed_out", "message": "no answer within 600 s"}
    instance = f"oc-{n % 8 + 1}"
    return TaskRecord(
        id=task_id,
        prompt=f"Fix the failing test number {n} in tests/test_pages.py and explain the cause.",
        status=status,
        created_at=at,
        batch_id=batch_id,
        task_id=f"job-{n}" if batch_id else None,
        instance=instance,
        url=f"http://127.0.0.1:{47100 + n % 8}",
        session_id=f"ses_{rng.getrandbits(96):024x}",
        directory="/home/user/project",
        model="anthropic/claude-sonnet-4",
        attempts=1,
        prompted=True,
        text=ANSWER if status is TaskStatus.COMPLETED else "",
        steps=3,
        tool_calls=TOOL_CALLS,
        tokens={**TOKENS, "input": 12_000 + n % 5_000},
        cost=0.0421,
        error=error,
        started_at=at + 0.05,
        finished_at=at + took,
    )


def _batch_sizes(scale: Scale) -> Iterator[int]:
    """How many tasks each batch gets: the first BIG_BATCH, the others share the rest."""
    batched = scale.tasks - max(1, round(scale.tasks * STANDALONE_SHARE))
    others = scale.batches - 1
    big = min(BIG_BATCH, batched - others)
    rest = batched - big
    yield big
    for i in range(others):
        yield rest // others + (1 if i < rest % others else 0)


def fill(home: Path, scale: Scale, *, now: float, seed: int = 17) -> tuple[str, str]:
    """Fill a registry under `home`; return (a standalone task's id, the big batch's id)."""
    rng = random.Random(seed)
    registry = Registry(home / "registry.db")
    store = TaskStore(registry)
    sizes = list(_batch_sizes(scale))
    standalone = scale.tasks - sum(sizes)
    # Batches and standalone tasks interleaved in time, oldest first, like a month of use.
    slots = ["batch"] * len(sizes) + ["task"] * standalone
    rng.shuffle(slots)
    step = SPAN_S / max(1, len(slots))
    at = now - SPAN_S
    n = 0
    big_batch = task_id = ""
    batches = iter(sizes)
    try:
        for slot in slots:
            at += step
            if slot == "task":
                task_id = f"t-{rng.getrandbits(40):010x}"
                store.add(_record(rng, task_id, at, None, n))
                n += 1
                continue
            size = next(batches)
            batch_id = f"b-{rng.getrandbits(40):010x}"
            big_batch = big_batch or batch_id
            records = []
            for seq in range(size):
                records.append(_record(rng, f"t-{rng.getrandbits(40):010x}", at + seq, batch_id, n))
                n += 1
            options = {"per_instance": 2}
            batch = Batch(
                batch_id, BatchStatus.RUNNING, at, at, source="tasks.jsonl", options=options
            )
            store.add_batch(batch, records)
            store.set_batch_status(batch_id, BatchStatus.COMPLETED)
        if not task_id or not big_batch:
            raise BenchError(f"registry fill made no standalone task or batch: {scale}")
        registry.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        registry.close()
    return task_id, big_batch


@dataclass(frozen=True)
class Command:
    key: str
    label: str
    argv: tuple[str, ...]
    goal: bool = True  # under GOAL_S
    detail: str = ""  # what the big registry's run shows


def commands(task_id: str, batch_id: str) -> list[Command]:
    return [
        Command("results", "`ocm results`", ("results",)),
        Command("result", "`ocm result ID`", ("result", task_id)),
        Command("batch_ls", "`ocm batch ls`", ("batch", "ls")),
        Command("ls", "`ocm ls --json`", ("ls", "--json")),
        Command("batch_show", "`ocm batch show ID`", ("batch", "show", batch_id), goal=False,
                detail=f"its {BIG_BATCH:,} tasks"),
    ]  # fmt: skip


def _home(env: BenchEnv, name: str) -> tuple[Path, dict[str, str]]:
    home = env.base / name
    home.mkdir()
    return home, {**env.env, "OCM_HOME": str(home)}


def run(env: BenchEnv, plan: Plan) -> Figure:
    scale = scale_for(plan)
    figure = Figure(
        7,
        f"Registry at scale: read commands over {scale.label}",
        commands=[
            "ocm results                # the newest 50 (and how many there are)",
            "ocm result TASK_ID",
            "ocm batch ls               # the newest 50 batches with their counts",
            "ocm ls --json",
            f"ocm batch show BATCH_ID   # a batch of {BIG_BATCH:,} tasks",
        ],
    )
    big_home, big_env = _home(env, "ocm-scale")
    small_home, small_env = _home(env, "ocm-scale-baseline")
    began = time.monotonic()
    big_ids = fill(big_home, scale, now=time.time())
    fill_s = time.monotonic() - began
    small_ids = fill(small_home, Scale(2, 1), now=time.time())
    big_cmds, small_cmds = commands(*big_ids), commands(*small_ids)
    walls = {c.key: Series() for c in big_cmds}
    bases = {c.key: Series() for c in big_cmds}
    for i in range(plan.cli_runs + 1):
        warm = i > 0  # the first round warms the page cache and is not counted
        for big, small in zip(big_cmds, small_cmds, strict=True):
            for command, environ, series in (
                (big, big_env, walls[big.key]),
                (small, small_env, bases[big.key]),
            ):
                result = check(
                    run_command([env.ocm, *command.argv], env=environ, cwd=env.project),
                    f"ocm {' '.join(command.argv[:2])}",
                )
                if command.key == "ls":
                    json.loads(result.stdout)
                if warm:
                    series.add(result.wall_s)
    for command in big_cmds:
        label = f"{command.label} ({command.detail})" if command.detail else command.label
        figure.add(command.key, label, "s", walls[command.key], baseline=f"{command.key}_0")
    for command in big_cmds:
        figure.add(f"{command.key}_0", f"{command.label}, baseline", "s", bases[command.key])
    for command in big_cmds:
        if command.goal:
            median = walls[command.key].median
            figure.goal(
                f"{command.label} under {GOAL_S * 1000:.0f} ms with {scale.label}",
                f"{median * 1000:.0f} ms",
                median < GOAL_S,
            )
    size = (big_home / "registry.db").stat().st_size
    figure.extra += [
        "| registry growth | |",
        "|---|---|",
        f"| file size with {scale.label} | {size / 2**20:.1f} MiB |",
        f"| per task record | {size / scale.tasks / 1024:.1f} KiB |",
        f"| filling it through `TaskStore` | {fill_s:.1f} s |",
        "",
    ]
    figure.notes += [
        "Wall around the whole command (interpreter start to exit), output piped; medians of "
        f"{plan.cli_runs} runs after one unmeasured round.",
        f"The registry holds {scale.label}: {STANDALONE_SHARE:.0%} of the tasks standalone "
        f"(`ocm run`), the rest in batches (one of {BIG_BATCH:,}); "
        "creation times spread over 30 days; 90% completed, the rest failed or timed out; "
        "every record as the runner writes it (answer text, two tool calls, tokens).",
        "The baseline rows run the same commands on a registry that holds one standalone task "
        "and one batch of one task (so every command has something to show). No instance is "
        "registered in either: `ocm ls --json` shows only foreign servers, if any run on the "
        "machine.",
    ]
    return figure
