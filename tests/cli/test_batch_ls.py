"""`ocm batch ls`: the newest batches by default, every one with --all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from opencode_manager.models import BatchStatus, TaskRecord, TaskStatus
from opencode_manager.registry import Registry
from opencode_manager.tasks.store import Batch, TaskStore

from helpers import Ocm, assert_one_line_error


def _batches(home: Path, count: int) -> None:
    store = TaskStore(Registry(home / "registry.db"))
    for i in range(count):
        task = TaskRecord(id=f"t-{i}", prompt="p", status=TaskStatus.COMPLETED, created_at=i,
                          batch_id=f"b-{i:03d}", started_at=i, finished_at=i + 2.5)  # fmt: skip
        batch = Batch(f"b-{i:03d}", BatchStatus.COMPLETED, created_at=i, updated_at=i)
        store.add_batch(batch, [task])
    store.registry.close()


def test_batch_ls_shows_the_newest_and_says_how_many_more(
    ocm: Ocm, isolated: dict[str, str]
) -> None:
    _batches(Path(isolated["OCM_HOME"]), 53)
    listed = ocm("batch", "ls", "--json", check=True)
    assert [row["id"] for row in listed.json()] == [f"b-{i:03d}" for i in range(3, 53)]
    assert listed.json()[0]["counts"] == {"completed": 1}
    assert listed.json()[0]["duration_s"] == 2.5
    assert "the newest 50 of 53 batches; --all shows every one" in listed.stderr
    assert len(ocm("batch", "ls", "--all", "--json", check=True).json()) == 53
    two = ocm("batch", "ls", "--limit", "2", check=True)
    assert [line.split()[0] for line in two.stdout.splitlines()] == ["BATCH", "b-051", "b-052"]
    assert two.stderr == ""


def test_batch_ls_limits_are_checked(ocm: Ocm) -> None:
    assert_one_line_error(ocm("batch", "ls", "--limit", "0"), 2, "must be 1 or more")
    assert_one_line_error(ocm("batch", "ls", "--all", "--limit", "3"), 2, "contradict")


def test_batch_ls_loads_neither_the_runner_nor_httpx(isolated: dict[str, str]) -> None:
    """Reading batches is a registry read: the runner, its HTTP client and rich's progress
    bar stay unloaded (`ocm batch ls` over 100,000 tasks is timed in bench/)."""
    _batches(Path(isolated["OCM_HOME"]), 2)
    code = (
        "import sys\n"
        "from opencode_manager.cli import main\n"
        "code = main(['batch', 'ls'])\n"
        "heavy = {'httpx', 'rich.progress', 'opencode_manager.tasks.batch'}\n"
        "assert 'opencode_manager.tasks.summary' in sys.modules\n"
        "print(code, sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines()[-1] == "0 []", result
