"""The task store's batch claims, on a real SQLite registry (no server)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opencode_manager.errors import ConflictError, NotFoundError
from opencode_manager.models import BatchStatus, ProcessIdentity, TaskRecord, TaskStatus
from opencode_manager.registry import Registry
from opencode_manager.tasks.store import Batch, TaskStore
from opencode_manager.tasks.summary import list_batches, summary

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


def _task(task_id: str, status: TaskStatus, *, batch: str | None, ended: float) -> TaskRecord:
    record = TaskRecord(id=task_id, prompt=task_id, status=status, created_at=ended - 1,
                        batch_id=batch)  # fmt: skip
    record.finished_at = ended if status.final else None
    return record


def test_prune_deletes_only_what_finished_before_the_cutoff(tmp_path: Path) -> None:
    store = TaskStore(Registry(tmp_path / "registry.db"))
    old, new = time.time() - 3600, time.time()
    for batch_id, status in (("b-old", BatchStatus.COMPLETED), ("b-run", BatchStatus.RUNNING)):
        batch = Batch(id=batch_id, status=status.value, created_at=old, updated_at=old)
        store.add_batch(batch, [_task(f"{batch_id}-t", TaskStatus.COMPLETED, batch=batch_id,
                                      ended=old)])  # fmt: skip
        if status is BatchStatus.COMPLETED:
            store.set_batch_status(batch_id, status.value)
    store.registry.db.execute("UPDATE batches SET finished_at = ? WHERE id = 'b-old'", (old,))
    store.add(_task("alone-old", TaskStatus.FAILED, batch=None, ended=old))
    store.add(_task("alone-new", TaskStatus.COMPLETED, batch=None, ended=new))
    store.add(_task("alone-running", TaskStatus.RUNNING, batch=None, ended=old))
    cutoff = time.time() - 60
    dry = store.prune(cutoff, dry_run=True)
    assert (dry.batches, dry.tasks, dry.dry_run) == (["b-old"], 2, True)
    assert store.count_tasks() == 5
    report = store.prune(cutoff)
    assert (report.batches, report.tasks) == (["b-old"], 2)
    assert sorted(r.id for r in store.list_tasks()) == ["alone-new", "alone-running", "b-run-t"]
    assert store.prune(cutoff).tasks == 0


def test_remove_batch_refuses_a_running_one_and_deletes_its_tasks(tmp_path: Path) -> None:
    store = _store(tmp_path, [TaskStatus.PENDING, TaskStatus.PENDING], BatchStatus.RUNNING)
    store.claim_batch("b-1", ME, lambda _: False)
    with pytest.raises(ConflictError, match="being run by process 1"):
        store.remove_batch("b-1", lambda _: True)
    assert store.remove_batch("b-1", lambda _: False) == 2  # its runner is gone
    assert store.count_tasks() == 0
    with pytest.raises(NotFoundError):
        store.remove_batch("b-1", lambda _: False)


def test_a_limit_gives_the_newest_oldest_first(tmp_path: Path) -> None:
    store = TaskStore(Registry(tmp_path / "registry.db"))
    for i in range(5):
        store.add(_task(f"t{i}", TaskStatus.COMPLETED, batch=None, ended=1000.0 + i))
    assert [r.id for r in store.list_tasks(limit=2)] == ["t3", "t4"]
    assert store.count_tasks(status="completed") == 5


def _timed(task_id: str, status: TaskStatus, batch: str, start: float | None) -> TaskRecord:
    record = TaskRecord(id=task_id, prompt=task_id, status=status, created_at=1000.0,
                        batch_id=batch, started_at=start)  # fmt: skip
    record.finished_at = start + 5.0 if start is not None and status.final else None
    return record


def test_batch_listing_counts_in_sql_what_the_summary_counts_from_records(
    tmp_path: Path,
) -> None:
    store = TaskStore(Registry(tmp_path / "registry.db"))
    shapes: dict[str, list[tuple[TaskStatus, float | None]]] = {
        "b-mixed": [(TaskStatus.COMPLETED, 10.0), (TaskStatus.FAILED, 3.0),
                    (TaskStatus.RUNNING, 20.0), (TaskStatus.PENDING, None)],
        "b-fresh": [(TaskStatus.PENDING, None), (TaskStatus.PENDING, None)],
        "b-empty": [],
    }  # fmt: skip
    for n, (batch_id, shape) in enumerate(shapes.items()):
        batch = Batch(id=batch_id, status="completed", created_at=n, updated_at=n)
        store.add_batch(batch, [_timed(f"{batch_id}-{i}", status, batch_id, start)
                                for i, (status, start) in enumerate(shape)])  # fmt: skip
    # A task that started after it was recorded: its start time reaches the tally too.
    record = store.get("b-fresh-0")
    record.status, record.started_at, record.finished_at = TaskStatus.COMPLETED, 7.0, 9.5
    store.save(record)
    listed = {s.id: s for s in list_batches(store)}
    assert list(listed) == ["b-mixed", "b-fresh", "b-empty"]
    for batch_id in shapes:
        whole = summary(store, batch_id)
        assert whole.tasks or batch_id == "b-empty"
        assert listed[batch_id] == dataclasses.replace(whole, tasks=[])
    assert (listed["b-mixed"].total, listed["b-mixed"].done) == (4, 2)
    assert listed["b-mixed"].duration_s == 12.0  # first start 3.0, last end 15.0
    assert listed["b-fresh"].counts == {"completed": 1, "pending": 1}
    assert listed["b-fresh"].duration_s == 2.5
    assert (listed["b-empty"].total, listed["b-empty"].duration_s) == (0, None)


def test_a_batch_limit_gives_the_newest_oldest_first(tmp_path: Path) -> None:
    store = TaskStore(Registry(tmp_path / "registry.db"))
    for i in range(5):
        store.add_batch(Batch(id=f"b{i}", status="completed", created_at=i, updated_at=i), [])
    assert [s.id for s in list_batches(store, limit=2)] == ["b3", "b4"]
    assert [s.id for s in list_batches(store)] == ["b0", "b1", "b2", "b3", "b4"]
    assert store.count_batches() == 5


def _plans(store: TaskStore, read: Callable[[], object]) -> list[str]:
    """The query plan of every statement `read` runs (as SQLite expands them)."""
    seen: list[str] = []
    store.registry.db.set_trace_callback(seen.append)
    try:
        read()
    finally:
        store.registry.db.set_trace_callback(None)
    return [
        " ".join(str(row[3]) for row in store.registry.query(f"EXPLAIN QUERY PLAN {sql}"))
        for sql in seen
    ]


@pytest.mark.parametrize(
    ("read", "index"),
    [
        (lambda s: s.list_tasks(limit=50), "INDEX"),
        (lambda s: s.list_tasks(status="failed", limit=50), "INDEX"),
        (lambda s: s.batches(limit=50), "INDEX"),
        (lambda s: s.tallies(["b-1", "b-2"]), "COVERING INDEX"),  # no record is read
    ],
    ids=["newest", "newest-failed", "newest-batches", "batch-counts"],
)
def test_reads_at_scale_use_an_index_and_sort_nothing(
    tmp_path: Path, read: Callable[[TaskStore], object], index: str
) -> None:
    """`ocm results` and `ocm batch ls` over 100,000 records: no table scan, no sort."""
    store = TaskStore(Registry(tmp_path / "registry.db"))
    plans = _plans(store, lambda: read(store))
    assert plans
    for plan in plans:
        assert f"USING {index}" in plan, plan
        assert "TEMP B-TREE" not in plan, plan


def test_records_are_stored_and_read_without_known_secrets(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    secret = "an-instance-password-0123456789"
    later = "a-token-made-later-0123456789"
    known = [secret]
    store = TaskStore(registry, secrets=lambda: tuple(known))
    prompt = f"the user's own words {secret}"  # sent again on resume: kept as given
    record = TaskRecord(id="t-1", prompt=prompt, status=TaskStatus.RUNNING, created_at=1.0)
    store.add(record)
    record.status = TaskStatus.COMPLETED
    record.text = f"cat said {secret} and {later}"
    record.tool_calls = [{"tool": "bash", "output": f"{secret}\n"}]
    record.todos = [{"content": secret}]
    record.asks = [{"request": {"patterns": [f"curl -u x:{secret}"]}}]
    record.structured = {"answer": secret}
    record.error = {"name": "E", "message": secret}
    store.save(record)
    (row,) = [r[0] for r in registry.query("SELECT record FROM tasks")]
    stored = json.dumps({**json.loads(row), "prompt": ""})
    assert secret not in stored  # never written
    assert later in stored  # not known when it was written
    assert store.get("t-1").prompt == prompt
    known.append(later)  # known now: a row written before is shown without it
    for shown in (store.get("t-1"), *store.list_tasks(), *store.list_tasks(limit=5)):
        text = str(dataclasses.replace(shown, prompt="").to_dict())
        assert secret not in text, text
        assert later not in text, text
        assert shown.text == "cat said [redacted] and [redacted]"
    plain = TaskStore(registry)  # without a book: as stored
    assert later in plain.get("t-1").text


def test_a_batch_summary_carries_each_error_message_not_only_its_name(
    tmp_path: Path,
) -> None:
    store = TaskStore(Registry(tmp_path / "r.db"))
    failed = TaskRecord("t-1", "p", TaskStatus.FAILED, 1.0, batch_id="b-1", task_id="one")
    failed.error = {"name": "APIError", "data": {"message": "scripted error 400"}}
    store.add_batch(Batch("b-1", "completed", 1.0, 1.0, None, {}), [failed])
    assert [t.error for t in summary(store, "b-1").tasks] == ["APIError: scripted error 400"]
