"""The task store's batch claims, on a real SQLite registry (no server)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from opencode_manager.errors import ConflictError
from opencode_manager.models import BatchStatus, ProcessIdentity, TaskRecord, TaskStatus
from opencode_manager.registry import Registry
from opencode_manager.tasks.store import Batch, TaskStore

ME = ProcessIdentity(pid=1, create_time=1.0)


def _store(tmp_path: Path, statuses: list[TaskStatus], batch_status: BatchStatus) -> TaskStore:
    store = TaskStore(Registry(tmp_path / "registry.db"))
    now = time.time()
    batch = Batch(id="b-1", status=batch_status.value, created_at=now, updated_at=now)
    tasks = [
        TaskRecord(id=f"t-{i}", prompt=f"p{i}", status=status, created_at=now, batch_id="b-1",
                   session_id="ses_x" if status is TaskStatus.CANCELLED else None)
        for i, status in enumerate(statuses)
    ]  # fmt: skip
    store.add_batch(batch, tasks)
    return store


def test_a_cancelled_batch_is_not_resumed_silently(tmp_path: Path) -> None:
    statuses = [TaskStatus.COMPLETED, TaskStatus.CANCELLED, TaskStatus.CANCELLED]
    store = _store(tmp_path, statuses, BatchStatus.CANCELLED)
    with pytest.raises(ConflictError, match=r"is cancelled \(2 of its tasks did not finish\); "
                       r"`ocm batch resume b-1 --requeue-cancelled` runs them"):  # fmt: skip
        store.claim_batch("b-1", ME, lambda _: False)
    assert store.batch("b-1").status == "cancelled"  # not relabelled
    assert [r.status for r in store.list_tasks(batch_id="b-1")] == statuses


def test_requeue_cancelled_puts_only_the_cancelled_tasks_back(tmp_path: Path) -> None:
    statuses = [TaskStatus.COMPLETED, TaskStatus.CANCELLED, TaskStatus.CANCELLED]
    store = _store(tmp_path, statuses, BatchStatus.CANCELLED)
    claimed = store.claim_batch("b-1", ME, lambda _: False, requeue_cancelled=True)
    assert claimed.status == "running"
    records = store.list_tasks(batch_id="b-1")
    assert [r.status for r in records] == [TaskStatus.COMPLETED, *[TaskStatus.PENDING] * 2]
    assert all(r.session_id is None and not r.prompted for r in records[1:])
    with pytest.raises(ConflictError, match="no cancelled task to requeue"):
        store.claim_batch("b-1", ME, lambda _: False, requeue_cancelled=True)


def test_a_completed_batch_has_nothing_to_resume(tmp_path: Path) -> None:
    store = _store(tmp_path, [TaskStatus.COMPLETED], BatchStatus.COMPLETED)
    with pytest.raises(ConflictError, match="is completed; nothing to resume"):
        store.claim_batch("b-1", ME, lambda _: False)
