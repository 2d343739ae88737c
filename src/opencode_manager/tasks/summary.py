"""What `ocm batch ls` and `ocm batch show` read: a batch's counts and its tasks' outcomes.

Reading needs no server, so it lives apart from the runner (tasks/batch.py, which brings the
HTTP client): `ocm batch ls` over a large registry loads only this, the store and SQLite.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from ..models import BatchStatus, TaskRecord, TaskStatus
from ..text import task_error_line
from .store import Batch, Tally, TaskStore


@dataclass
class TaskOutcome:
    """One task in a batch summary."""

    id: str | None  # the id given in the batch file
    task: str  # the task record's id
    status: str
    instance: str | None
    duration_s: float | None
    error: str | None


@dataclass
class BatchSummary:
    """A batch with its counts and per-task outcomes (`ocm batch show`)."""

    id: str
    status: BatchStatus
    source: str | None
    created_at: float
    finished_at: float | None
    total: int
    done: int
    counts: dict[str, int]
    duration_s: float | None
    tasks: list[TaskOutcome] = field(default_factory=list)

    @property
    def all_completed(self) -> bool:
        return self.counts.get("completed", 0) == self.total

    def to_dict(self, *, with_tasks: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        if not with_tasks:
            data.pop("tasks")
        return data


def summary(store: TaskStore, batch_id: str) -> BatchSummary:
    """The batch with its counts and per-task outcomes."""
    return _summarize(store.batch(batch_id), store.list_tasks(batch_id=batch_id))


def list_batches(store: TaskStore, *, limit: int | None = None) -> list[BatchSummary]:
    """Batches with their counts, not their tasks (counted in SQL: no record is read),
    oldest first (the newest `limit` when given)."""
    batches = store.batches(limit=limit)
    tallies = store.tallies([b.id for b in batches])
    return [_tallied(b, tallies.get(b.id) or Tally()) for b in batches]


def _summarize(batch: Batch, records: list[TaskRecord]) -> BatchSummary:
    tally = Tally()
    for record in records:
        tally.add(record.status.value, 1, record.started_at or None, record.finished_at or None)
    return dataclasses.replace(
        _tallied(batch, tally),
        tasks=[
            TaskOutcome(
                id=r.task_id,
                task=r.id,
                status=r.status.value,
                instance=r.instance,
                duration_s=r.duration_s,
                error=task_error_line(r.error) or None,
            )
            for r in records
        ],
    )


def _tallied(batch: Batch, tally: Tally) -> BatchSummary:
    status = batch.status
    if status is BatchStatus.RUNNING:
        from .. import process  # here: psutil only for a batch that may be running

        if not process.is_alive(batch.runner):
            status = BatchStatus.INTERRUPTED
    start, end = tally.first_start, tally.last_end
    return BatchSummary(
        id=batch.id,
        status=status,
        source=batch.source,
        created_at=batch.created_at,
        finished_at=batch.finished_at,
        total=sum(tally.counts.values()),
        done=sum(n for s, n in tally.counts.items() if TaskStatus(s).final),
        counts=tally.counts,
        duration_s=round(end - start, 3) if start is not None and end is not None else None,
    )
