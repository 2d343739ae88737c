"""Running a batch: fan tasks out over instances, durably, and resume after a crash.

Placement: a pinned task goes to its instance; the others go to the least busy chosen
instance with room under `per_instance`, and at most `concurrency` run at once. State is in
the registry DB at every step: the batch and all its tasks are recorded before the first one
runs, a task's session id before its prompt, and the `prompted` flag right after it, so
`ocm batch resume` never sends a prompt twice: a task whose prompt reached the server is
followed to its end from the server instead. Ctrl-C aborts the running sessions and marks the
rest cancelled. Infrastructure failures (instance down, connection lost) are retried on another
instance; task failures only with `retries`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .. import process
from ..client import AsyncOpencodeClient, http_options
from ..errors import ConflictError, OcmError, ServerError, UsageError
from ..models import InstanceRecord, ProcessIdentity, State, TaskRecord, TaskStatus
from . import placement
from .batchfile import BatchTask
from .dispatch import Fleet, busy_counts
from .runner import Observer, TaskRunner
from .store import Batch, TaskStore, new_id
from .transcript import find_user_message

INFRA_RETRIES = 2


@dataclass
class BatchOptions:
    instances: list[str] = field(default_factory=list)  # refs; empty = every running instance
    concurrency: int | None = None  # default: instances x per_instance
    per_instance: int = 2
    timeout: float | None = None  # per task, unless the task sets its own
    retries: int = 0  # extra attempts for tasks that fail (not for infrastructure trouble)
    out: str | None = None
    auto_approve: bool = False

    def validate(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError(f"invalid --concurrency {self.concurrency}: must be 1 or more")
        if self.per_instance < 1:
            raise UsageError(f"invalid --per-instance {self.per_instance}: must be 1 or more")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError(f"invalid --timeout {self.timeout:g}: must be above 0")
        if self.retries < 0:
            raise UsageError(f"invalid --retries {self.retries}: must be 0 or more")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class BatchProgress:
    """Counts for a progress display, and the task that just changed."""

    total: int
    counts: dict[str, int]
    task: TaskRecord | None = None


Listener = Callable[[BatchProgress], None]


def create(
    fleet: Fleet,
    store: TaskStore,
    tasks: list[BatchTask],
    options: BatchOptions,
    *,
    source: str | None,
) -> Batch:
    """Check everything, then record the batch and all its tasks (nothing runs yet)."""
    options.validate()
    chosen = _candidates(fleet, options.instances)
    by_ref: dict[str, InstanceRecord] = {}
    for task in tasks:
        if task.instance is not None and task.instance not in by_ref:
            try:
                by_ref[task.instance] = _running(fleet, task.instance)
            except OcmError as exc:
                raise UsageError(f"{source or 'batch file'}:{task.line}: {exc}") from None
    if not chosen and any(t.instance is None for t in tasks):
        raise ConflictError("no running instance for the batch; start some with `ocm start`")
    now = time.time()
    batch = Batch(
        id=new_id("b"),
        status="running",
        created_at=now,
        updated_at=now,
        source=source,
        options=options.to_dict(),
    )
    records = []
    for task in tasks:
        pinned = by_ref.get(task.instance) if task.instance else None
        records.append(
            TaskRecord(
                id=new_id("t"),
                prompt=task.prompt,
                status=TaskStatus.PENDING,
                created_at=now,
                batch_id=batch.id,
                task_id=task.id,
                pinned=pinned.name if pinned else None,
                directory=_absolute(task.dir) if task.dir else None,
                model=task.model,
                agent=task.agent,
                timeout=task.timeout or options.timeout,
            )
        )
    store.add_batch(batch, records)
    return batch


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def _running(fleet: Fleet, ref: str) -> InstanceRecord:
    record = fleet.resolve(ref)
    if record.state is not State.RUNNING or not process.is_alive(record.server):
        raise ConflictError(f"instance {record.name} is not running")
    return record


def _candidates(fleet: Fleet, refs: list[str]) -> list[InstanceRecord]:
    if refs:
        return [_running(fleet, ref) for ref in dict.fromkeys(refs)]
    return [
        r
        for r in fleet.records()
        if r.state is State.RUNNING and r.url and process.is_alive(r.server)
    ]


class BatchRun:
    """Executes (or resumes) one recorded batch."""

    def __init__(
        self,
        fleet: Fleet,
        store: TaskStore,
        batch_id: str,
        *,
        listener: Listener | None = None,
        cancel: asyncio.Event | None = None,
        observer_for: Callable[[TaskRecord], Observer] | None = None,
    ) -> None:
        self.fleet = fleet
        self.store = store
        self.batch = store.batch(batch_id)
        self.options = BatchOptions.from_dict(self.batch.options)
        self.listener = listener
        self.cancel = cancel or asyncio.Event()
        self.observer_for = observer_for
        self.records = store.list_tasks(batch_id=batch_id)
        self.inflight: dict[str, int] = {}
        self.external_busy: dict[str, int] = {}
        self.failed_on: dict[str, set[str]] = {}

    def _notify(self, task: TaskRecord | None = None) -> None:
        if self.listener is None:
            return
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record.status.value] = counts.get(record.status.value, 0) + 1
        self.listener(BatchProgress(total=len(self.records), counts=counts, task=task))

    async def run(self) -> Batch:
        me = process.identity_of(os.getpid())
        self.batch.options["runner"] = {"pid": me.pid, "ctime": me.create_time} if me else None
        self._save_batch("running")
        candidates = _candidates(self.fleet, self.options.instances)
        limit = self.options.concurrency or max(1, len(candidates) * self.options.per_instance)
        queue = [r for r in self.records if not r.status.final]
        self._notify()
        async with httpx.AsyncClient(**http_options()) as http:
            self.external_busy = await busy_counts(self.fleet, candidates, http)
            running: set[asyncio.Task[TaskRecord | None]] = set()
            while queue or running:
                if self.cancel.is_set():
                    break
                placed = True
                while queue and len(running) < limit and placed:
                    placed = False
                    for record in list(queue):
                        instance = self._place(record, candidates)
                        if instance is None:
                            continue
                        queue.remove(record)
                        # Count it now: the task only starts at the next await.
                        self.inflight[instance.name] = self.inflight.get(instance.name, 0) + 1
                        running.add(asyncio.create_task(self._run_one(record, instance, http)))
                        placed = True
                        break
                if not running:
                    if queue:  # nothing can be placed: every instance it may use is gone
                        for record in queue:
                            self._fail(record, "NoInstance", "no running instance can take it")
                        queue.clear()
                    break
                done, running = await asyncio.wait(
                    running, timeout=0.5, return_when=asyncio.FIRST_COMPLETED
                )
                for finished in done:
                    retry = finished.result()
                    if retry is not None:
                        queue.insert(0, retry)
                candidates = [c for c in candidates if process.is_alive(c.server)]
            if running:  # cancelled: the runners abort their sessions
                await asyncio.gather(*running, return_exceptions=True)
        for record in self.records:
            if not record.status.final:
                record.status = TaskStatus.CANCELLED
                record.finished_at = time.time()
                self.store.save(record)
        status = "cancelled" if self.cancel.is_set() else "completed"
        self._save_batch(status)
        self._notify()
        self._write_out()
        return self.batch

    def _save_batch(self, status: str) -> None:
        self.batch.status = status
        with self.store.registry.transaction() as db:
            db.execute(
                "UPDATE batches SET options = ? WHERE id = ?",
                (json.dumps(self.batch.options), self.batch.id),
            )
        self.store.set_batch_status(self.batch.id, status)

    def _place(self, record: TaskRecord, candidates: list[InstanceRecord]) -> InstanceRecord | None:
        """Where the task runs now, or None to wait for room."""
        per = self.options.per_instance
        # A prompt that reached a server is followed there (resume); a pinned task waits for
        # its instance.
        bound = record.instance if (record.prompted and record.session_id) else record.pinned
        if bound is not None:
            try:
                instance = self.fleet.resolve(bound)
            except OcmError:
                return None
            if self.inflight.get(instance.name, 0) >= per and not record.prompted:
                return None
            return instance
        avoid = self.failed_on.get(record.id, set())
        pool = [c for c in candidates if c.name not in avoid] or candidates
        slots = [
            placement.Slot(
                c.name,
                self.inflight.get(c.name, 0) + self.external_busy.get(c.name, 0),
                room=per - self.inflight.get(c.name, 0),
            )
            for c in pool
        ]
        name = placement.pick(slots)
        return next((c for c in pool if c.name == name), None)

    async def _run_one(
        self, record: TaskRecord, instance: InstanceRecord, http: httpx.AsyncClient
    ) -> TaskRecord | None:
        """Run one task (already counted in inflight); return it if it should be queued again."""
        name = instance.name
        try:
            endpoint = self.fleet.endpoint(instance)
            if endpoint is None:
                raise ServerError(f"{name} has no URL", instance=name)
            client = AsyncOpencodeClient(endpoint, http=http)
            if record.session_id is None or record.instance != name:
                record.instance, record.url = name, instance.url
                record.session_id, record.prompted = None, False
                record.directory = record.directory or instance.spec.dir
            elif not record.prompted:
                await self._reconcile_prompted(client, record)
            self._notify(record)
            runner = TaskRunner(
                client=client,
                record=record,
                persist=self.store.save,
                observer=self.observer_for(record) if self.observer_for else Observer(),
                auto_approve=self.options.auto_approve,
                cancel=self.cancel,
            )
            await runner.run()
            if (
                record.status is TaskStatus.FAILED
                and record.attempts <= self.options.retries
                and not self.cancel.is_set()
            ):
                return self._requeue(record, name)
        except ServerError as exc:
            return self._infrastructure(record, name, exc)
        finally:
            self.inflight[name] -= 1
            self._notify(record)
        return None

    async def _reconcile_prompted(self, client: AsyncOpencodeClient, record: TaskRecord) -> None:
        """After a crash between sending the prompt and recording it: look before resending."""
        assert record.session_id is not None
        messages = await client.messages(record.session_id)
        if find_user_message(messages, record.prompt) is not None:
            record.prompted = True
            self.store.save(record)

    def _requeue(self, record: TaskRecord, name: str) -> TaskRecord:
        self.failed_on.setdefault(record.id, set()).add(name)
        record.status = TaskStatus.PENDING
        record.session_id, record.prompted = None, False
        record.error = None
        self.store.save(record)
        return record

    def _infrastructure(self, record: TaskRecord, name: str, exc: ServerError) -> TaskRecord | None:
        try:
            alive = process.is_alive(self.fleet.resolve(name).server)
        except OcmError:
            alive = False
        if record.prompted and alive:
            # The server may still be running it: never send it again; mark it for resume.
            self._fail(record, "ConnectionLost", f"{exc}; `ocm batch resume` follows it up")
            return None
        if record.attempts <= INFRA_RETRIES and not self.cancel.is_set():
            return self._requeue(record, name)
        self._fail(record, "InstanceUnreachable", str(exc))
        return None

    def _fail(self, record: TaskRecord, name: str, message: str) -> None:
        record.status = TaskStatus.FAILED
        record.error = {"name": name, "message": message}
        record.finished_at = time.time()
        self.store.save(record)

    def _write_out(self) -> None:
        if not self.options.out:
            return
        out = Path(self.options.out)
        out.mkdir(parents=True, exist_ok=True)
        for record in self.records:
            _write_json(out / f"{record.task_id or record.id}.json", record.to_dict())
        _write_json(out / "summary.json", summary(self.store, self.batch.id))


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def summary(store: TaskStore, batch_id: str) -> dict[str, Any]:
    """The batch with its counts and per-task outcomes."""
    batch = store.batch(batch_id)
    records = store.list_tasks(batch_id=batch_id)
    counts: dict[str, int] = {}
    for record in records:
        counts[record.status.value] = counts.get(record.status.value, 0) + 1
    starts = [r.started_at for r in records if r.started_at]
    ends = [r.finished_at for r in records if r.finished_at]
    runner = batch.options.get("runner") or {}
    status = batch.status
    if status == "running" and runner and not process.is_alive(_runner_identity(runner)):
        status = "interrupted"
    return {
        "id": batch.id,
        "status": status,
        "source": batch.source,
        "created_at": batch.created_at,
        "finished_at": batch.finished_at,
        "total": len(records),
        "done": sum(1 for r in records if r.status.final),
        "counts": counts,
        "duration_s": round(max(ends) - min(starts), 3) if starts and ends else None,
        "tasks": [
            {
                "id": r.task_id,
                "task": r.id,
                "status": r.status.value,
                "instance": r.instance,
                "duration_s": r.duration_s,
                "error": (r.error or {}).get("message") or (r.error or {}).get("name"),
            }
            for r in records
        ],
    }


def _runner_identity(data: dict[str, Any]) -> ProcessIdentity | None:
    try:
        return ProcessIdentity(int(data["pid"]), float(data["ctime"]))
    except (KeyError, TypeError, ValueError):
        return None
