"""Durable task records and batches, in the registry database.

A task's whole record is stored as JSON (it grows as the task runs); the columns beside it are
what we filter on. Every change is one short transaction, so a `kill -9` at any point leaves
a consistent row: the `prompted` flag in particular is written before a prompt counts as sent.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..database import Database
from ..errors import ConflictError, NotFoundError, UsageError
from ..migrations import TOTALS_ALL, USAGE_COLUMNS
from ..models import BatchStatus, ProcessIdentity, TaskRecord, TaskStatus
from ..redaction import may_hold, redact_data

_TASK_FIELDS = {f.name for f in fields(TaskRecord)}
_IN_CHUNK = 500  # ids per `IN (...)`: well under SQLite's limit on bound parameters
#: The tasks that ran in a worktree, by the partial index migration m010 made for them.
WITH_WORKTREES = (
    "SELECT record FROM tasks WHERE json_extract(record, '$.worktree') IS NOT NULL"
    " ORDER BY created_at"
)
_TALLY = "SELECT batch_id, status, COUNT(*), MIN(started_at), MAX(finished_at) FROM tasks"


def new_id(prefix: str) -> str:
    """Ten random hex digits (`secrets.token_hex(5)`, whose hashlib the reads need not load)."""
    return f"{prefix}-{os.urandom(5).hex()}"


#: What a record holds of what the agent and its server said, where an agent may have printed
#: a secret: stored and shown without them. The prompt is the user's own, kept as given (a
#: resumed task sends it).
SAID = ("text", "tool_calls", "todos", "diff", "error", "asks", "structured", "worktree")
Secrets = Callable[[], tuple[str, ...]]


def may_have_ended(record: TaskRecord) -> bool:
    """Whether `ocm result` asks the task's server before showing this record: prompted,
    not final, and with a session on a named instance (`dispatch.refresh_task`)."""
    return (
        not record.status.final
        and record.prompted
        and bool(record.session_id)
        and bool(record.instance)
    )


def listed_stale(record: TaskRecord) -> bool:
    """Whether `ocm results` asks the task's server about this listed record: a standalone
    task still marked running (`dispatch.list_tasks`)."""
    return record.status is TaskStatus.RUNNING and record.batch_id is None and record.prompted


def left_queued(record: TaskRecord) -> bool:
    """Whether `ocm results` asks the provider slots about this listed record: a standalone
    task still `queued` and never sent, which its process may have left (a killed `ocm run`;
    `dispatch.list_tasks` ends it cancelled unless it still waits or holds a slot)."""
    return (
        record.status is TaskStatus.QUEUED
        and record.batch_id is None
        and not record.prompted
        and not record.sending
    )


def redact_record(record: TaskRecord, secrets: tuple[str, ...]) -> TaskRecord:
    """The record (changed in place) with every secret taken out of what it says."""
    if secrets:
        for name in SAID:
            setattr(record, name, redact_data(getattr(record, name), secrets))
    return record


def usage(record: TaskRecord) -> tuple[int, ...]:
    """What the record adds to the running totals, in `USAGE_COLUMNS` order: its tokens, and
    its cost in billionths (integers, so a total stays exact through any number of saves)."""
    tokens = record.tokens if isinstance(record.tokens, dict) else {}
    cache = tokens.get("cache")
    cache = cache if isinstance(cache, dict) else {}
    cost = _number(record.cost)
    return (
        int(_number(tokens.get("input"))),
        int(_number(tokens.get("output"))),
        int(_number(tokens.get("reasoning"))),
        int(_number(cache.get("read"))),
        int(_number(cache.get("write"))),
        round(cost * 1e9),
    )


def _number(value: Any) -> float:
    """A figure a server reported, or 0 for anything that is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value) if math.isfinite(value) else 0.0


def _load(row_json: str, secrets: tuple[str, ...] = ()) -> TaskRecord:
    data: dict[str, Any] = json.loads(row_json)
    data = {k: v for k, v in data.items() if k in _TASK_FIELDS}
    data["status"] = TaskStatus(data["status"])
    record = TaskRecord(**data)
    if secrets and may_hold(row_json, secrets):  # a row stored before redaction knew them
        redact_record(record, secrets)
    return record


def _dump(record: TaskRecord, secrets: tuple[str, ...] = ()) -> str:
    text = json.dumps(record.to_dict())
    if not secrets or not may_hold(text, secrets):
        return text
    data = record.to_dict()
    for name in SAID:
        data[name] = redact_data(data[name], secrets)
    return json.dumps(data)


@dataclass
class Batch:
    """A batch's row: what it was given, and who runs it."""

    id: str
    status: BatchStatus  # as stored: running, completed or cancelled (never interrupted)
    created_at: float
    updated_at: float
    source: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    finished_at: float | None = None
    runner: ProcessIdentity | None = None  # the process that claimed it last
    cancel_requested: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


@dataclass
class Tally:
    """A batch's tasks by status, and when the first of them started and the last ended."""

    counts: dict[str, int] = field(default_factory=dict)
    first_start: float | None = None
    last_end: float | None = None

    def add(self, status: str, count: int, start: float | None, end: float | None) -> None:
        self.counts[status] = self.counts.get(status, 0) + count
        if start is not None:
            self.first_start = start if self.first_start is None else min(self.first_start, start)
        if end is not None:
            self.last_end = end if self.last_end is None else max(self.last_end, end)


@dataclass
class DayTotals:
    """The tasks created on one UTC day, as they stand now: by status, tokens and cost."""

    day: str  # YYYY-MM-DD
    tasks: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The token kinds reported by `totals()`, in `USAGE_COLUMNS` order.
TOKEN_KINDS = ("input", "output", "reasoning", "cache_read", "cache_write")
_TOTALS = (
    "SELECT period, status, tasks, tokens_input, tokens_output, tokens_reasoning,"
    " tokens_cache_read, tokens_cache_write, cost_nanos FROM task_totals"
)


def _fold(rows: Sequence[Any]) -> dict[str, Any]:
    """Rows of `task_totals` of one period (one per status) as {tasks, tokens, cost}; a
    status whose tasks all went (pruned, or moved on) is left out."""
    sums = [sum(int(row[3 + i]) for row in rows) for i in range(len(USAGE_COLUMNS))]
    return {
        "tasks": {str(row[1]): int(row[2]) for row in rows if row[2]},
        "tokens": dict(zip(TOKEN_KINDS, sums, strict=False)),
        "cost": sums[-1] / 1e9,
    }


@dataclass
class PruneReport:
    """What `ocm results prune` deleted (or, with dry_run, would delete)."""

    batches: list[str]
    tasks: int
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TaskStore:
    """Tasks and batches on top of the registry database (the `tasks`, `batches` and
    `task_totals` tables; the instances are registry.py's).

    With `secrets` (the fleet's secret book), records are stored and read without any of
    them: what an agent printed never reaches the registry, and a record stored before a
    secret was known is redacted when it is read, whichever front shows it."""

    def __init__(self, registry: Database, *, secrets: Secrets = tuple) -> None:
        self.registry = registry
        self.secrets = secrets

    # -- tasks -----------------------------------------------------------------------------
    def add(self, record: TaskRecord, *, seq: int = 0) -> TaskRecord:
        blob = _dump(record, self.secrets())
        with self.registry.transaction() as db:
            _insert(db, record, seq, blob)
        return record

    async def aadd(self, record: TaskRecord) -> TaskRecord:
        import asyncio  # here: the read commands load this module without an event loop

        return await asyncio.to_thread(self.add, record)

    async def asave(self, record: TaskRecord) -> None:
        """`save` in a worker thread: a locked registry never stalls the event loop."""
        import asyncio

        await asyncio.to_thread(self.save, record)

    def save(self, record: TaskRecord) -> None:
        """Write the record; an ended task's provider slots are free with it, in the same
        transaction (a detached turn's lease has nobody else to give it back)."""
        from ..limits.leases import release  # here: the reads load this module, not asyncio

        blob = _dump(record, self.secrets())
        with self.registry.transaction() as db:
            _update(db, record, blob)
            if record.status.final:
                release(db, record.id)

    def note_ask(self, session_ids: Sequence[str], entry: dict[str, Any]) -> str | None:
        """Record an ask answered through ocm (`ocm answer`, MCP) in the task that owns its
        session: the newest task on the first of `session_ids` that one has (the ask's own
        session, then the one it runs under), one not ended first. Nobody may be following
        a detached task to see the answer; a runner that does dedupes by the ask's id
        (`tracker.note_ask`). The task's id, or None when no task owns the session."""
        from .tracker import note_ask

        secrets = self.secrets()
        with self.registry.transaction() as db:
            for session_id in dict.fromkeys(s for s in session_ids if s):
                rows = db.execute(
                    "SELECT record FROM tasks WHERE instr(record, ?) > 0"
                    " AND json_extract(record, '$.session_id') = ?"
                    " ORDER BY status IN ('pending', 'queued', 'running') DESC, created_at DESC"
                    " LIMIT 1",
                    (session_id, session_id),
                ).fetchall()
                if not rows:
                    continue
                record = _load(rows[0][0], secrets)
                if note_ask(record.asks, entry):
                    _update(db, record, _dump(record, secrets))
                return record.id
        return None

    def get(self, task_id: str) -> TaskRecord:
        rows = self.registry.query("SELECT record FROM tasks WHERE id = ?", (task_id,))
        if not rows:
            raise NotFoundError(f"no task {task_id!r}; see `ocm results`")
        return _load(rows[0][0], self.secrets())

    def list_tasks(
        self, *, batch_id: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[TaskRecord]:
        clauses, params = [], []
        if batch_id is not None:
            clauses.append("batch_id = ?")
            params.append(batch_id)
        if status is not None:
            try:
                TaskStatus(status)
            except ValueError:
                choices = ", ".join(s.value for s in TaskStatus)
                raise UsageError(f"invalid --status {status!r}: choose from {choices}") from None
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "seq, created_at" if batch_id is not None else "created_at"
        secrets = self.secrets()
        if limit:  # the newest `limit`, still oldest first
            order = ", ".join(f"{key} DESC" for key in order.split(", "))
            sql = f"SELECT record FROM tasks {where} ORDER BY {order} LIMIT {int(limit)}"  # noqa: S608
            rows = reversed(self.registry.query(sql, tuple(params)))
            return [_load(r[0], secrets) for r in rows]
        sql = f"SELECT record FROM tasks {where} ORDER BY {order}"  # noqa: S608
        return [_load(r[0], secrets) for r in self.registry.query(sql, tuple(params))]

    def recent_ids(self, kind: str, limit: int = 200) -> list[str]:
        """The newest task, batch or session ids (for shell completion)."""
        sql = {
            "task": "SELECT id FROM tasks ORDER BY created_at DESC LIMIT ?",
            "batch": "SELECT id FROM batches ORDER BY created_at DESC LIMIT ?",
            "session": "SELECT DISTINCT json_extract(record, '$.session_id') FROM tasks"
            " WHERE json_extract(record, '$.session_id') IS NOT NULL"
            " ORDER BY created_at DESC LIMIT ?",
        }[kind]
        return [str(row[0]) for row in self.registry.query(sql, (limit,))]

    def known_ids(self, kind: str) -> list[str]:
        """Names or ids ocm knows, newest first, for shell completion: kind is "instance"
        (the registry's), "task", "batch" or "session" (sessions that ocm's tasks used)."""
        if kind == "instance":
            rows = self.registry.query("SELECT name FROM instances ORDER BY created_at DESC")
            return [str(row[0]) for row in rows]
        if kind not in ("task", "batch", "session"):
            raise UsageError(f"unknown kind {kind!r}: instance, task, batch or session")
        return self.recent_ids(kind)

    def with_worktrees(self) -> list[TaskRecord]:
        """Tasks that ran in a worktree of their own, oldest first."""
        rows = self.registry.query(WITH_WORKTREES)
        secrets = self.secrets()
        return [_load(r[0], secrets) for r in rows]

    def count_tasks(self, *, batch_id: str | None = None, status: str | None = None) -> int:
        clauses, params = [], []
        if batch_id is not None:
            clauses.append("batch_id = ?")
            params.append(batch_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return int(self.registry.query(f"SELECT COUNT(*) FROM tasks {where}", tuple(params))[0][0])  # noqa: S608

    def prune(self, before: float, *, dry_run: bool = False) -> PruneReport:
        """Delete finished batches (with their tasks) and finished standalone tasks that
        ended before `before`; return (batch ids, task count). Nothing unfinished goes: a
        running or interrupted batch can still be resumed, a running task still waited for."""
        with self.registry.transaction() as db:
            batches = [
                str(r[0])
                for r in db.execute(
                    "SELECT id FROM batches WHERE status IN (?, ?) AND finished_at < ?",
                    (BatchStatus.COMPLETED.value, BatchStatus.CANCELLED.value, before),
                )
            ]
            in_batches = sum(_count_batch_tasks(db, b) for b in batches)
            alone = int(db.execute(f"SELECT COUNT(*) {_PRUNABLE}", (before,)).fetchone()[0])
            if not dry_run:
                for batch_id in batches:
                    db.execute("DELETE FROM tasks WHERE batch_id = ?", (batch_id,))
                    db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
                db.execute(f"DELETE {_PRUNABLE}", (before,))
        report = PruneReport(batches=batches, tasks=in_batches + alone, dry_run=dry_run)
        if report.tasks and not dry_run:
            self.registry.compact()
        return report

    def prune_ended(
        self, older_than: float, *, dry_run: bool = False, now: float | None = None
    ) -> PruneReport:
        """`prune` of what ended more than `older_than` seconds ago."""
        if older_than < 0:
            raise UsageError("older_than must be 0 or more seconds")
        return self.prune((time.time() if now is None else now) - older_than, dry_run=dry_run)

    def remove_batches(
        self, batch_ids: Sequence[str], is_alive: Callable[[ProcessIdentity], bool]
    ) -> dict[str, int]:
        """`remove_batch` of each (once, in order, stopping at the first refused); return the
        task count removed per batch."""
        return {b: self.remove_batch(b, is_alive) for b in dict.fromkeys(batch_ids)}

    def remove_batch(self, batch_id: str, is_alive: Callable[[ProcessIdentity], bool]) -> int:
        """Delete a batch and its tasks (refused while its runner is alive); return how many
        tasks went."""
        with self.registry.transaction() as db:
            row = db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no batch {batch_id!r}; see `ocm batch ls`")
            holder = _holder(row)
            if row["status"] == BatchStatus.RUNNING.value and holder and is_alive(holder):
                raise ConflictError(
                    f"batch {batch_id} is being run by process {holder.pid}; "
                    f"`ocm batch cancel {batch_id}` first"
                )
            count = _count_batch_tasks(db, batch_id)
            db.execute("DELETE FROM tasks WHERE batch_id = ?", (batch_id,))
            db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
        return count

    def totals(self) -> dict[str, Any]:
        """Tasks by status, and token and cost totals over every stored task: the running
        totals the registry keeps as records are written (a few rows, however many tasks)."""
        return _fold(self.registry.query(f"{_TOTALS} WHERE period = ?", (TOTALS_ALL,)))

    def days(self, *, since: str | None = None) -> list[DayTotals]:
        """Per UTC day of creation (from `since`, YYYY-MM-DD, when given), oldest first: the
        same running totals, one row per day and status."""
        rows = self.registry.query(
            f"{_TOTALS} WHERE period >= ? AND period <> ? ORDER BY period",
            (since or "", TOTALS_ALL),
        )
        by_day: dict[str, list[Any]] = {}
        for row in rows:
            by_day.setdefault(str(row[0]), []).append(row)
        return [DayTotals(day, **_fold(group)) for day, group in by_day.items()]

    # -- batches ---------------------------------------------------------------------------
    def add_batch(self, batch: Batch, tasks: list[TaskRecord]) -> None:
        """A batch and all its tasks in one transaction: all recorded, or none."""
        now = time.time()
        blobs = [_dump(record, self.secrets()) for record in tasks]
        with self.registry.transaction() as db:
            db.execute(
                "INSERT INTO batches (id, source, options, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    batch.id,
                    batch.source,
                    json.dumps(batch.options),
                    batch.status.value,
                    batch.created_at,
                    now,
                ),
            )
            for seq, (record, blob) in enumerate(zip(tasks, blobs, strict=True)):
                _insert(db, record, seq, blob)

    def claim_batch(
        self,
        batch_id: str,
        runner: ProcessIdentity,
        is_alive: Callable[[ProcessIdentity], bool],
        *,
        requeue_cancelled: bool = False,
    ) -> Batch:
        """Make `runner` the one process running this batch, atomically: refused while
        another live process holds it (two `ocm batch resume` can never both run it).

        A cancelled batch stays cancelled unless `requeue_cancelled` puts its cancelled tasks
        back in the queue (an explicit request: a status is never rewritten silently)."""
        with self.registry.transaction() as db:
            row = db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no batch {batch_id!r}; see `ocm batch ls`")
            holder = _holder(row)
            if holder is not None and holder != runner and is_alive(holder):
                raise ConflictError(
                    f"batch {batch_id} is being run by process {holder.pid}; wait for it, or "
                    f"`ocm batch cancel {batch_id}`"
                )
            # What a cancel stopped: the tasks it aborted while they ran, and those it
            # cancelled before they began. Both did not finish, and both are requeued.
            cancelled = [
                _load(r[0])
                for r in db.execute(
                    "SELECT record FROM tasks WHERE batch_id = ? AND status IN (?, ?) ORDER BY seq",
                    (batch_id, TaskStatus.CANCELLED.value, TaskStatus.ABORTED.value),
                )
            ]
            if requeue_cancelled:
                if not cancelled:
                    raise ConflictError(f"batch {batch_id} has no cancelled task to requeue")
                for record in cancelled:
                    record.status, record.error, record.finished_at = TaskStatus.PENDING, None, None
                    record.session_id, record.prompted, record.sending = None, False, False
                    record.message_id = None
                    _update(db, record)
            elif row["status"] == BatchStatus.CANCELLED.value:
                raise ConflictError(
                    f"batch {batch_id} is cancelled ({len(cancelled)} of its tasks did not "
                    f"finish); `ocm batch resume {batch_id} --requeue-cancelled` runs them"
                )
            elif row["status"] == BatchStatus.COMPLETED.value:
                raise ConflictError(f"batch {batch_id} is completed; nothing to resume")
            db.execute(
                "UPDATE batches SET runner_pid = ?, runner_ctime = ?, status = ?, updated_at = ?,"
                " cancel_requested = NULL WHERE id = ?",
                (runner.pid, runner.create_time, BatchStatus.RUNNING.value, time.time(), batch_id),
            )
            row = db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return _batch(row)

    def request_cancel(self, batch_id: str) -> Batch:
        with self.registry.transaction() as db:
            cursor = db.execute(
                "UPDATE batches SET cancel_requested = ?, updated_at = ? WHERE id = ?",
                (time.time(), time.time(), batch_id),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"no batch {batch_id!r}; see `ocm batch ls`")
            row = db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return _batch(row)

    def set_batch_status(self, batch_id: str, status: BatchStatus) -> None:
        now = time.time()
        finished = now if status.final else None
        with self.registry.transaction() as db:
            db.execute(
                "UPDATE batches SET status = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                (status.value, now, finished, batch_id),
            )

    def batch(self, batch_id: str) -> Batch:
        rows = self.registry.query("SELECT * FROM batches WHERE id = ?", (batch_id,))
        if not rows:
            raise NotFoundError(f"no batch {batch_id!r}; see `ocm batch ls`")
        return _batch(rows[0])

    def batches(self, *, limit: int | None = None) -> list[Batch]:
        """Batches, oldest first (the newest `limit` when given)."""
        if limit:
            sql = "SELECT * FROM batches ORDER BY created_at DESC LIMIT ?"
            return [_batch(r) for r in reversed(self.registry.query(sql, (int(limit),)))]
        return [_batch(r) for r in self.registry.query("SELECT * FROM batches ORDER BY created_at")]

    def count_batches(self) -> int:
        return int(self.registry.query("SELECT COUNT(*) FROM batches")[0][0])

    def tallies(self, batch_ids: Sequence[str]) -> dict[str, Tally]:
        """These batches' tasks counted from an index, no record read: batch id -> tally."""
        found: dict[str, Tally] = {}
        for start in range(0, len(batch_ids), _IN_CHUNK):
            chunk = tuple(batch_ids[start : start + _IN_CHUNK])
            marks = ", ".join("?" * len(chunk))  # placeholders only: the ids are bound
            sql = f"{_TALLY} WHERE batch_id IN ({marks}) GROUP BY batch_id, status"
            for row in self.registry.query(sql, chunk):
                tally = found.setdefault(str(row[0]), Tally())
                tally.add(str(row[1]), int(row[2]), row[3], row[4])
        return found


def _insert(db: sqlite3.Connection, record: TaskRecord, seq: int, blob: str | None = None) -> None:
    # With the record, its usage (USAGE_COLUMNS): the registry's triggers add it up.
    db.execute(
        "INSERT INTO tasks (id, batch_id, seq, status, prompt, record, created_at, updated_at,"
        " started_at, finished_at, tokens_input, tokens_output, tokens_reasoning,"
        " tokens_cache_read, tokens_cache_write, cost_nanos)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (record.id, record.batch_id, seq, record.status.value, record.prompt,
         blob or json.dumps(record.to_dict()), record.created_at, time.time(), record.started_at,
         record.finished_at, *usage(record)),
    )  # fmt: skip


# Standalone tasks that ended (not pending or running) before a time.
_PRUNABLE = (
    "FROM tasks WHERE batch_id IS NULL AND status NOT IN ('pending', 'queued', 'running')"
    " AND COALESCE(finished_at, updated_at) < ?"
)


def _count_batch_tasks(db: sqlite3.Connection, batch_id: str) -> int:
    return int(
        db.execute("SELECT COUNT(*) FROM tasks WHERE batch_id = ?", (batch_id,)).fetchone()[0]
    )


def _update(db: sqlite3.Connection, record: TaskRecord, blob: str | None = None) -> None:
    db.execute(
        "UPDATE tasks SET status = ?, record = ?, updated_at = ?, started_at = ?, finished_at = ?,"
        " tokens_input = ?, tokens_output = ?, tokens_reasoning = ?, tokens_cache_read = ?,"
        " tokens_cache_write = ?, cost_nanos = ? WHERE id = ?",
        (record.status.value, blob or json.dumps(record.to_dict()), time.time(), record.started_at,
         record.finished_at, *usage(record), record.id),
    )  # fmt: skip


def _holder(row: Any) -> ProcessIdentity | None:
    if row["runner_pid"] is None or row["runner_ctime"] is None:
        return None
    return ProcessIdentity(int(row["runner_pid"]), float(row["runner_ctime"]))


def _batch_status(word: str) -> BatchStatus:
    """A stored status; one this version does not know (written by a newer one) reads as
    running, which a dead runner makes `interrupted`."""
    try:
        return BatchStatus(word)
    except ValueError:
        return BatchStatus.RUNNING


def _batch(row: Any) -> Batch:
    return Batch(
        id=row["id"],
        status=_batch_status(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        source=row["source"],
        options=json.loads(row["options"]),
        finished_at=row["finished_at"],
        runner=_holder(row),
        cancel_requested=row["cancel_requested"],
    )
