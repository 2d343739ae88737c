"""The task store's batch claims, reads at scale and running totals, on a real SQLite
registry (no server)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.errors import ConflictError, NotFoundError, UsageError
from opencode_manager.migrations import MIGRATIONS
from opencode_manager.models import (
    BatchStatus,
    InstanceSpec,
    ProcessIdentity,
    TaskRecord,
    TaskStatus,
)
from opencode_manager.registry import Registry
from opencode_manager.tasks.store import TOKEN_KINDS, Batch, TaskStore, usage
from opencode_manager.tasks.summary import list_batches, summary

ME = ProcessIdentity(pid=1, create_time=1.0)


def _store(tmp_path: Path, statuses: list[TaskStatus], batch_status: BatchStatus) -> TaskStore:
    store = TaskStore(Registry(tmp_path / "registry.db"))
    now = time.time()
    batch = Batch(id="b-1", status=batch_status, created_at=now, updated_at=now)
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


def test_a_cancel_counts_and_requeues_the_tasks_it_aborted_too(tmp_path: Path) -> None:
    """A cancel aborts the running tasks and cancels the waiting ones: none of them
    finished, and `--requeue-cancelled` runs them all (it said "2 did not finish" of 3)."""
    statuses = [TaskStatus.COMPLETED, TaskStatus.ABORTED, TaskStatus.CANCELLED,
                TaskStatus.CANCELLED]  # fmt: skip
    store = _store(tmp_path, statuses, BatchStatus.CANCELLED)
    with pytest.raises(ConflictError, match=r"is cancelled \(3 of its tasks did not finish\)"):
        store.claim_batch("b-1", ME, lambda _: False)
    store.claim_batch("b-1", ME, lambda _: False, requeue_cancelled=True)
    records = store.list_tasks(batch_id="b-1")
    assert [r.status for r in records] == [TaskStatus.COMPLETED, *[TaskStatus.PENDING] * 3]


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
        batch = Batch(id=batch_id, status=status, created_at=old, updated_at=old)
        store.add_batch(batch, [_task(f"{batch_id}-t", TaskStatus.COMPLETED, batch=batch_id,
                                      ended=old)])  # fmt: skip
        if status is BatchStatus.COMPLETED:
            store.set_batch_status(batch_id, status)
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


def test_prune_ended_counts_back_from_now_and_refuses_a_negative_age(tmp_path: Path) -> None:
    store = TaskStore(Registry(tmp_path / "registry.db"))
    store.add(_task("t-old", TaskStatus.COMPLETED, batch=None, ended=1000.0))
    with pytest.raises(UsageError, match="0 or more"):
        store.prune_ended(-1)
    assert store.prune_ended(600.0, dry_run=True, now=1500.0).tasks == 0
    assert store.prune_ended(400.0, now=1500.0).tasks == 1


def test_remove_batches_goes_once_per_batch_and_stops_at_a_refusal(tmp_path: Path) -> None:
    store = _store(tmp_path, [TaskStatus.PENDING], BatchStatus.COMPLETED)
    assert store.remove_batches(["b-1", "b-1"], lambda _: False) == {"b-1": 1}
    with pytest.raises(NotFoundError):
        store.remove_batches(["b-1"], lambda _: False)


def test_known_ids_are_newest_first_and_the_kind_is_checked(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    store = TaskStore(registry)
    for name in ("older", "newer"):
        with registry.transaction() as db:
            registry.reserve(db, InstanceSpec(name=name, dir="/p"), port=None)
        registry.db.execute(
            "UPDATE instances SET created_at = ? WHERE name = ?",
            (2.0 if name == "newer" else 1.0, name),
        )
    store.add(_task("t-1", TaskStatus.COMPLETED, batch=None, ended=5.0))
    assert store.known_ids("instance") == ["newer", "older"]
    assert store.known_ids("task") == ["t-1"]
    with pytest.raises(UsageError, match="unknown kind 'sessions'"):
        store.known_ids("sessions")


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
        batch = Batch(id=batch_id, status=BatchStatus.COMPLETED, created_at=n, updated_at=n)
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
        store.add_batch(
            Batch(id=f"b{i}", status=BatchStatus.COMPLETED, created_at=i, updated_at=i), []
        )
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
    store.add_batch(Batch("b-1", BatchStatus.COMPLETED, 1.0, 1.0, None, {}), [failed])
    assert [t.error for t in summary(store, "b-1").tasks] == ["APIError: scripted error 400"]


# -- running totals ----------------------------------------------------------------------------
STATUSES = list(TaskStatus)
THREE = [TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.COMPLETED]
DAY = 86_400.0


def _recount(records: list[TaskRecord]) -> dict[str, Any]:
    """The totals counted afresh from every record, as `totals()` once did."""
    counts: dict[str, int] = {}
    tokens = dict.fromkeys(TOKEN_KINDS, 0)
    cost = 0.0
    for record in records:
        counts[record.status.value] = counts.get(record.status.value, 0) + 1
        cache = record.tokens.get("cache") or {}
        for kind, value in (
            ("input", record.tokens.get("input")),
            ("output", record.tokens.get("output")),
            ("reasoning", record.tokens.get("reasoning")),
            ("cache_read", cache.get("read")),
            ("cache_write", cache.get("write")),
        ):
            tokens[kind] += value or 0
        cost += record.cost
    return {"tasks": counts, "tokens": tokens, "cost": cost}


def _by_day(records: list[TaskRecord]) -> dict[str, dict[str, Any]]:
    days: dict[str, list[TaskRecord]] = {}
    for record in records:
        day = time.strftime("%Y-%m-%d", time.gmtime(record.created_at))
        days.setdefault(day, []).append(record)
    return {day: _recount(group) for day, group in sorted(days.items())}


def _assert_matches(store: TaskStore) -> None:
    records = store.list_tasks()
    want, got = _recount(records), store.totals()
    assert got == {**want, "cost": pytest.approx(want["cost"], abs=1e-6)}
    days = {d.day: {"tasks": d.tasks, "tokens": d.tokens, "cost": d.cost} for d in store.days()}
    days = {day: figures for day, figures in days.items() if figures["tasks"]}  # emptied days
    want_days = _by_day(records)
    assert days.keys() == want_days.keys()
    for day, figures in want_days.items():
        assert days[day] == {**figures, "cost": pytest.approx(figures["cost"], abs=1e-6)}


def _spent(rng: random.Random, record: TaskRecord) -> None:
    """The record as the runner leaves it after another step: more tokens, more cost."""
    tokens = record.tokens or {"input": 0, "output": 0, "reasoning": 0,
                               "cache": {"read": 0, "write": 0}}  # fmt: skip
    tokens["input"] += rng.randrange(5_000)
    tokens["output"] += rng.randrange(500)
    tokens["reasoning"] += rng.randrange(3) * 100
    tokens["cache"]["read"] += rng.randrange(4_000)
    tokens["cache"]["write"] += rng.randrange(2) * 50
    record.tokens = tokens
    record.cost = round(record.cost + rng.random() / 7, 9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_running_totals_equal_a_recount_after_any_writes(tmp_path: Path, seed: int) -> None:
    """Adds, saves (status changes, growing usage), requeues, `batch rm` and prune, in a random
    order: the running totals, over all and per day, always equal a count from the records."""
    rng = random.Random(seed)
    store = TaskStore(Registry(tmp_path / "registry.db"))
    base = 1_700_000_000.0
    live: dict[str, TaskRecord] = {}
    batches: list[str] = []
    for step in range(250):
        roll = rng.random()
        at = base + rng.randrange(5) * DAY + rng.random() * DAY
        if roll < 0.2 or not live:
            record = TaskRecord(id=f"t-{step}", prompt="p", status=TaskStatus.PENDING,
                                created_at=at)  # fmt: skip
            if rng.random() < 0.5:
                _spent(rng, record)
            live[record.id] = store.add(record)
        elif roll < 0.3:
            batch_id = f"b-{step}"
            tasks = [
                TaskRecord(id=f"{batch_id}-{i}", prompt="p", status=TaskStatus.PENDING,
                           created_at=at, batch_id=batch_id)
                for i in range(rng.randrange(4))
            ]  # fmt: skip
            store.add_batch(Batch(batch_id, BatchStatus.RUNNING, at, at), tasks)
            live.update((t.id, t) for t in tasks)
            batches.append(batch_id)
        elif roll < 0.8:
            record = live[rng.choice(sorted(live))]
            record.status = rng.choice(STATUSES)
            if rng.random() < 0.7:
                _spent(rng, record)
            record.finished_at = at + 60 if record.status.final else None
            store.save(record)
        elif roll < 0.85 and batches:
            batch_id = rng.choice(batches)
            store.set_batch_status(batch_id, BatchStatus.CANCELLED)
            for record in live.values():
                if record.batch_id == batch_id and rng.random() < 0.5:
                    record.status = TaskStatus.CANCELLED
                    store.save(record)
            with contextlib.suppress(ConflictError):
                store.claim_batch(batch_id, ME, lambda _: False, requeue_cancelled=True)
            live.update((r.id, r) for r in store.list_tasks(batch_id=batch_id))
        elif roll < 0.92 and batches:
            batch_id = batches.pop(rng.randrange(len(batches)))
            store.remove_batch(batch_id, lambda _: False)
            live = {k: r for k, r in live.items() if r.batch_id != batch_id}
        else:
            for batch_id in batches:
                if rng.random() < 0.3:
                    store.set_batch_status(batch_id, BatchStatus.COMPLETED)
            store.prune(time.time() + 10)
            kept = {r.id for r in store.list_tasks()}
            live = {k: r for k, r in live.items() if k in kept}
            batches = [b for b in batches if store.count_tasks(batch_id=b) or _has(store, b)]
        if step % 25 == 0:
            _assert_matches(store)
    _assert_matches(store)
    assert store.count_tasks() == len(live)


def _has(store: TaskStore, batch_id: str) -> bool:
    try:
        store.batch(batch_id)
    except NotFoundError:
        return False
    return True


def test_totals_read_a_few_rows_of_their_own_not_the_records(tmp_path: Path) -> None:
    """`ocm metrics` at 100 or 1,000,000 records: the totals come from their own table, by
    its key, and cost the same number of SQLite steps however many records there are."""
    store = TaskStore(Registry(tmp_path / "registry.db"))
    for read in (store.totals, store.days):
        plans = _plans(store, read)
        assert plans
        for plan in plans:
            assert "task_totals USING PRIMARY KEY" in plan, plan
            assert "tasks" not in plan.replace("task_totals", ""), plan

    def steps() -> int:
        count = 0

        def tick() -> int:
            nonlocal count
            count += 1
            return 0

        store.registry.db.set_progress_handler(tick, 1)  # called at every VM instruction
        try:
            store.totals()
        finally:
            store.registry.db.set_progress_handler(None, 1)
        return count

    def fill(first: int, last: int) -> None:
        records = [
            TaskRecord(id=f"t-{i}", prompt="p", status=THREE[i % 3], created_at=1.0,
                       tokens={"input": i}, cost=0.5)
            for i in range(first, last)
        ]  # fmt: skip
        store.add_batch(Batch(f"b-{first}", BatchStatus.COMPLETED, 1.0, 1.0), records)

    fill(0, 30)
    few = steps()
    fill(30, 3_000)
    assert steps() == few
    assert store.totals()["tasks"] == {"pending": 1_000, "running": 1_000, "completed": 1_000}


def test_totals_are_back_filled_from_the_records_of_an_older_registry(tmp_path: Path) -> None:
    """m008 on a registry made before it: the totals start from the stored records, and the
    writes after it keep them."""
    path = tmp_path / "registry.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for name, fn in MIGRATIONS[: [n for n, _ in MIGRATIONS].index("m008_task_totals")]:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    records = [
        TaskRecord(id="t-1", prompt="p", status=TaskStatus.COMPLETED, created_at=1.0,
                   tokens={"input": 7, "output": 2, "cache": {"read": 3}}, cost=0.1),
        TaskRecord(id="t-2", prompt="p", status=TaskStatus.COMPLETED, created_at=DAY + 1,
                   tokens={"input": 5, "reasoning": 4, "cache": {"write": 1}}, cost=0.2),
        TaskRecord(id="t-3", prompt="p", status=TaskStatus.FAILED, created_at=DAY + 2),
    ]  # fmt: skip
    for record in records:
        db.execute(
            "INSERT INTO tasks (id, status, prompt, record, created_at, updated_at)"
            " VALUES (?, ?, 'p', ?, ?, 0)",
            (record.id, record.status.value, json.dumps(record.to_dict()), record.created_at),
        )
    db.commit()
    db.close()
    store = TaskStore(Registry(path))
    assert "m008_task_totals" in store.registry.applied_migrations()
    _assert_matches(store)
    assert [d.day for d in store.days()] == ["1970-01-01", "1970-01-02"]
    assert [d.day for d in store.days(since="1970-01-02")] == ["1970-01-02"]
    fixed = store.get("t-3")
    fixed.status, fixed.tokens, fixed.cost = TaskStatus.COMPLETED, {"output": 9}, 0.3
    store.save(fixed)
    _assert_matches(store)
    assert store.totals()["tasks"] == {"completed": 3}
    assert store.totals()["cost"] == pytest.approx(0.6)


def test_usage_takes_what_a_server_reported_and_nothing_else() -> None:
    record = TaskRecord(
        id="t",
        prompt="p",
        status=TaskStatus.COMPLETED,
        created_at=0.0,
        tokens={"input": 3.0, "output": "12", "cache": None},
        cost=0.1 + 0.2,
    )
    assert usage(record) == (3, 0, 0, 0, 0, 300_000_000)
    record.cost = float("nan")
    assert usage(record)[-1] == 0


def test_a_batch_status_round_trips_as_its_enum(tmp_path: Path) -> None:
    """Stored as the same words as ever; read back as `BatchStatus`; a word this version does
    not know (a newer one wrote it) reads as running, which a dead runner makes interrupted."""
    store = TaskStore(Registry(tmp_path / "registry.db"))
    store.add_batch(Batch("b-1", BatchStatus.RUNNING, 1.0, 1.0), [])
    assert store.batch("b-1").status is BatchStatus.RUNNING
    store.set_batch_status("b-1", BatchStatus.CANCELLED)
    batch = store.batch("b-1")
    assert batch.status is BatchStatus.CANCELLED
    assert batch.finished_at is not None
    assert batch.to_dict()["status"] == "cancelled"
    stored = store.registry.query("SELECT status FROM batches WHERE id = 'b-1'")
    assert [tuple(r) for r in stored] == [("cancelled",)]
    with store.registry.transaction() as db:
        db.execute("UPDATE batches SET status = 'paused' WHERE id = 'b-1'")
    assert store.batch("b-1").status is BatchStatus.RUNNING
    assert summary(store, "b-1").status is BatchStatus.INTERRUPTED
    store.registry.close()
