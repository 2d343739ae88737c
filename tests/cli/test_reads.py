"""The read commands go straight to the store: no event loop, HTTP client or lifecycle.

`ocm results`, `result`, `batch ls`, `batch show` and `worktrees` print stored records
(issue 28.2: they cost several times `ocm --version` through the facade). Each is run in a
fresh interpreter here and its `sys.modules` checked; and `fronts.Records` gives what the
facade gives, except for a task still marked running, which it leaves to the facade.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opencode_manager import Manager, Settings
from opencode_manager.fronts import Records
from opencode_manager.models import BatchStatus, TaskRecord, TaskStatus
from opencode_manager.registry import Registry
from opencode_manager.tasks.store import WITH_WORKTREES, Batch, TaskStore

#: What a read must not load: the HTTP stack, the event loop, and the facade's machinery.
HEAVY = (
    "httpx", "h11", "anyio", "asyncio", "psutil",
    "opencode_manager.manager", "opencode_manager.twin", "opencode_manager.instances.lifecycle",
    "opencode_manager.instances.fleet", "opencode_manager.client",
)  # fmt: skip
WORKTREE = {"path": "/nowhere/wt", "repository": "/nowhere", "branch": "ocm/t-w", "base": "abc"}


def _fill(home: Path) -> None:
    store = TaskStore(Registry(home / "registry.db"))
    now = time.time()
    for i in range(3):
        store.add(
            TaskRecord(
                id=f"t-{i}", prompt=f"p{i}", status=TaskStatus.COMPLETED, created_at=now + i,
                instance="oc-1", session_id=f"ses_{i}", prompted=True, text=f"answer {i}",
                started_at=now + i, finished_at=now + i + 1.5,
            )
        )  # fmt: skip
    boom = {"name": "APIError", "message": "boom"}
    failed = TaskRecord(id="t-w", prompt="w", status=TaskStatus.FAILED, created_at=now + 5,
                        worktree=WORKTREE, error=boom)  # fmt: skip
    store.add(failed)
    batch = Batch("b-1", BatchStatus.COMPLETED, created_at=now, updated_at=now)
    task = TaskRecord(id="t-b", prompt="b", status=TaskStatus.COMPLETED, created_at=now,
                      batch_id="b-1", task_id="one", started_at=now,
                      finished_at=now + 2)  # fmt: skip
    store.add_batch(batch, [task])
    store.registry.close()


READS = [
    ("results", "--json"),
    ("results", "--json", "id,status"),
    ("results",),
    ("result", "t-1", "--json"),
    ("result", "t-w"),
    ("batch", "ls", "--json"),
    ("batch", "ls", "--json", "id,status"),
    ("batch", "ls"),
    ("batch", "show", "b-1", "--json"),
    ("batch", "show", "b-1"),
    ("worktrees", "--json"),
    ("worktrees", "--json", "task,branch"),
    ("worktrees",),
]

_PROBE = """
import json, sys
from opencode_manager.cli import main
code = main(sys.argv[2:])
sys.stdout.flush()
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


@pytest.mark.parametrize("argv", READS, ids=" ".join)
def test_a_read_command_loads_no_http_stack_nor_the_facade(
    argv: tuple[str, ...], isolated: dict[str, str], tmp_path: Path
) -> None:
    _fill(Path(isolated["OCM_HOME"]))
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(report), *argv],
        env={**os.environ, **isolated},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    seen = json.loads(report.read_text())
    assert seen["code"] == 0, done.stderr
    assert done.stdout.strip()  # it printed what it read
    loaded = [m for m in seen["modules"] if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]
    assert loaded == []
    if "--json" in argv:
        assert "rich" not in seen["modules"]  # JSON for scripts needs no terminal renderer
        fields = argv[argv.index("--json") + 1 :]
        if fields:  # `--json FIELDS`: only those, in that order
            rows = json.loads(done.stdout)
            assert rows
            assert all(list(row) == fields[0].split(",") for row in rows)


def test_records_read_what_the_facade_reads(isolated: dict[str, str]) -> None:
    _fill(Path(isolated["OCM_HOME"]))
    records = Records(Settings.load())
    with Manager() as manager:
        assert [r.to_dict() for r in records.tasks() or []] == [
            r.to_dict() for r in manager.tasks()
        ]
        assert records.task("t-w") == manager.task("t-w")
        assert [b.to_dict() for b in records.batches()] == [b.to_dict() for b in manager.batches()]
        assert records.batch("b-1") == manager.batch_show("b-1")
        assert records.worktrees() == manager.worktrees()
        assert records.count_tasks(status="failed") == manager.count_tasks(status="failed") == 1
    records.close()


def test_a_task_still_running_is_left_to_the_facade(isolated: dict[str, str]) -> None:
    """Its server may know that it ended (its `ocm run` gone with a terminal): the facade
    asks it, so `Records` answers None and the command takes the facade's way."""
    home = Path(isolated["OCM_HOME"])
    _fill(home)
    store = TaskStore(Registry(home / "registry.db"))
    now = time.time()
    store.add(TaskRecord(id="t-run", prompt="r", status=TaskStatus.RUNNING, created_at=now + 9,
                         instance="oc-gone", session_id="ses_r", prompted=True))  # fmt: skip
    store.registry.close()
    records = Records(Settings.load())
    try:
        assert records.task("t-run") is None
        assert records.tasks() is None
        assert records.tasks(status="completed") is not None  # the running one is not listed
        assert records.task("t-1") is not None
    finally:
        records.close()


def test_a_task_left_queued_is_left_to_the_facade(isolated: dict[str, str]) -> None:
    """A standalone task still `queued`, never sent, may have been left by a killed `ocm run`:
    the facade ends it cancelled unless it still waits for a slot (`dispatch.list_tasks`), so
    `Records` answers None and `ocm results` takes the facade's way, which does."""
    home = Path(isolated["OCM_HOME"])
    _fill(home)
    store = TaskStore(Registry(home / "registry.db"))
    store.add(TaskRecord(id="t-q", prompt="q", status=TaskStatus.QUEUED, created_at=time.time(),
                         queue={"place": 1, "reason": "concurrency 1"}))  # fmt: skip
    store.registry.close()
    records = Records(Settings.load())
    try:
        assert records.tasks() is None
        assert records.tasks(status="completed") is not None
    finally:
        records.close()
    with Manager() as manager:
        left = manager.task("t-q")
        assert [r.id for r in manager.tasks() if r.id == "t-q"] == ["t-q"]
        assert manager.task("t-q").status is TaskStatus.CANCELLED  # nobody waits for it
    assert left.status is TaskStatus.QUEUED


def test_the_worktree_list_reads_an_index_not_every_record(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    try:
        plan = " ".join(
            str(row[3]) for row in registry.query(f"EXPLAIN QUERY PLAN {WITH_WORKTREES}")
        )
    finally:
        registry.close()
    assert "tasks_with_worktree" in plan
