"""Running a batch: fan tasks out over instances, durably, and resume after a crash.

Placement: a pinned task goes to its instance; the others go to the least busy chosen
instance with room under `per_instance`, and at most `concurrency` run at once.

Exactly once, by construction:
* the batch and all its tasks are recorded before the first one runs;
* a batch is claimed by one runner process in one registry transaction (its PID and start
  time), so two `ocm batch resume` can never both run it;
* a task records its session before its prompt, then the prompt's message id and "about to
  send" (`sending`) just before it, and `prompted` right after; a task that was about to be
  sent, or whose send got no answer, is looked up on its server by that id before anything
  is sent again (delivery.py), and a prompt that reached a server is followed there, never
  sent elsewhere nor again;
* a task that failed for an infrastructure reason before reaching the model is retried (at
  once on another instance, or by `resume`); one whose server went away mid-turn is looked at
  again when the server is back: a finished turn is recorded, a running or not yet started
  one is followed, a prompt not there yet is looked up and sent again with its own id into
  its own session, and only a turn whose server process is gone is lost and run again
  (custody.py): a prompt just taken that has not started is never mistaken for one.

Ctrl-C (or `ocm batch cancel`) aborts the running sessions and marks the rest cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import process
from ..client import AsyncOpencodeClient
from ..client.hub import EventHub
from ..errors import (
    ConflictError,
    OcmError,
    ServerError,
    SessionNotFound,
    TurnLost,
    UsageError,
)
from ..instances.fleet import Fleet
from ..limits.budget import batch_gate
from ..limits.keys import claim_key, forget_keys, task_for_key, validate_key
from ..models import BatchStatus, InstanceRecord, State, TaskRecord, TaskStatus
from . import control, placement
from . import custody as custodies
from . import worktree as worktrees
from .batchfile import BatchTask, parse
from .custody import Custody
from .delivery import user_message
from .dispatch import DEFAULT_MAX_RETRIES, busy_counts, control_for
from .runner import Checkpoint, Observer, TaskRunner, _no_checkpoint, settling
from .store import Batch, TaskStore, new_id
from .summary import BatchSummary, summary
from .tracker import TurnState
from .transcript import ABORTED_ERROR, build_turn, error_name

INFRA_RETRIES = 2  # immediate retries elsewhere for a task that never reached a model
RECOVER_TIMEOUT = 60.0  # how long a prompted task waits for its restarting instance
RETRYABLE = "retryable"  # marks a failure that `resume` runs again


@dataclass
class BatchOptions:
    instances: list[str] = field(default_factory=list)  # refs; empty = every running instance
    concurrency: int | None = None  # default: instances x per_instance
    per_instance: int = 2
    timeout: float | None = None  # per task, unless the task sets its own
    retries: int = 0  # extra attempts for tasks that fail (not for infrastructure trouble)
    out: str | None = None
    auto_approve: bool = False
    max_retries: int | None = DEFAULT_MAX_RETRIES  # provider retries per task before it fails
    worktree: bool = False  # every task in a git worktree of its own (a task may ask alone)
    base: str | None = None  # their base commit (default: the repository's HEAD)
    schema: dict[str, Any] | None = None  # a structured answer for tasks without their own
    recover_timeout: float = RECOVER_TIMEOUT  # a sent task's wait for its instance to return
    # -- provider control (tasks/control.py): the tasks' defaults, and the batch's budget --
    priority: int = 0
    max_cost: float | None = None  # per task (`--max-cost`)
    max_tokens: int | None = None  # per task (`--max-tokens`)
    recover: int | None = None  # continuations after transient provider errors, per task
    fallbacks: list[str] = field(default_factory=list)
    batch_max_cost: float | None = None  # the whole batch: no new task once it is spent
    key: str | None = None  # idempotent submission: the same key returns the same batch

    def validate(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError(f"invalid --concurrency {self.concurrency}: must be 1 or more")
        if self.per_instance < 1:
            raise UsageError(f"invalid --per-instance {self.per_instance}: must be 1 or more")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError(f"invalid --timeout {self.timeout:g}: must be above 0")
        if self.retries < 0:
            raise UsageError(f"invalid --retries {self.retries}: must be 0 or more")
        if self.max_retries is not None and self.max_retries < 0:
            raise UsageError(f"invalid --max-retries {self.max_retries}: must be 0 or more")
        if self.recover_timeout <= 0:
            raise UsageError("invalid --recover-timeout: must be above 0")
        control.validate(
            priority=self.priority, recover=self.recover, fallbacks=self.fallbacks,
            max_cost=self.max_cost, max_tokens=self.max_tokens,
        )  # fmt: skip
        if self.batch_max_cost is not None and not self.batch_max_cost > 0:
            raise UsageError(f"invalid --batch-max-cost {self.batch_max_cost:g}: must be above 0")
        if self.key is not None:
            validate_key(self.key)

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


# -- creating -----------------------------------------------------------------------------
def create_batch(
    fleet: Fleet,
    store: TaskStore,
    tasks: Sequence[BatchTask] | str,
    options: BatchOptions | None = None,
    *,
    source: str | None = None,
) -> BatchSummary:
    """Check everything, then record the batch and all its tasks (nothing runs yet). With a
    submission key already used, the batch that key made, as it stands."""
    return _create(fleet, store, tasks, options, source=source)[0]


def _create(
    fleet: Fleet,
    store: TaskStore,
    tasks: Sequence[BatchTask] | str,
    options: BatchOptions | None = None,
    *,
    source: str | None = None,
) -> tuple[BatchSummary, bool]:
    """`create_batch`, and whether this call made the batch (False: its key's earlier one)."""
    options = options or BatchOptions()
    options.validate()
    if isinstance(tasks, str):
        tasks = parse(tasks, source=source or "batch file")
    if not tasks:
        raise UsageError(f"{source or 'batch'}: no tasks in it")
    where = source or "batch file"
    for task in tasks:
        if task.dir is not None and not Path(task.dir).expanduser().is_dir():
            raise UsageError(f"{where}:{task.line}: no such directory {task.dir}")
    _check_out(options.out)
    chosen = _candidates(fleet, options.instances)
    by_ref: dict[str, InstanceRecord] = {}
    for task in tasks:
        if task.instance is not None and task.instance not in by_ref:
            try:
                by_ref[task.instance] = fleet.resolve_running(task.instance)
            except OcmError as exc:
                raise UsageError(f"{where}:{task.line}: {exc}") from None
    if not chosen and any(t.instance is None for t in tasks):
        raise ConflictError("no running instance for the batch; start some with `ocm start`")
    if options.out:
        try:
            Path(options.out).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {options.out}: cannot create it: {exc.strerror}") from None
    batch_id = new_id("b")
    if options.key is not None:
        claimed = claim_key(fleet.registry, options.key, batch_id)
        if claimed != batch_id:
            return summary(store, claimed), False
    ids = [new_id("t") for _ in tasks]
    trees = _worktrees(fleet, tasks, ids, options, chosen, by_ref, where)
    now = time.time()
    batch = Batch(
        id=batch_id,
        status=BatchStatus.RUNNING,
        created_at=now,
        updated_at=now,
        source=source,
        options=options.to_dict(),
    )
    records = []
    for task, task_record_id in zip(tasks, ids, strict=True):
        pinned = by_ref.get(task.instance) if task.instance else None
        tree = trees.get(task_record_id)
        records.append(
            TaskRecord(
                id=task_record_id,
                prompt=task.prompt,
                status=TaskStatus.PENDING,
                created_at=now,
                batch_id=batch.id,
                task_id=task.id,
                pinned=pinned.name if pinned else None,
                directory=tree.directory
                if tree
                else str(Path(task.dir).expanduser().resolve())
                if task.dir
                else None,
                worktree=tree.to_dict() if tree else None,
                schema=task.schema or options.schema,
                model=task.model,
                agent=task.agent,
                timeout=task.timeout or options.timeout,
                max_retries=options.max_retries,
                priority=task.priority if task.priority is not None else options.priority,
                max_cost=task.max_cost or options.max_cost,
                max_tokens=task.max_tokens or options.max_tokens,
                recover=options.recover,
                fallbacks=list(task.fallbacks or options.fallbacks),
                provider=control.provider_of(task.model),
            )
        )
    try:
        store.add_batch(batch, records)
    except BaseException:
        for tree in trees.values():
            with contextlib.suppress(OcmError):
                worktrees.remove(tree)
        if options.key is not None:
            forget_keys(fleet.registry, [batch_id])
        raise
    return summary(store, batch.id), True


def _worktrees(
    fleet: Fleet,
    tasks: Sequence[BatchTask],
    ids: list[str],
    options: BatchOptions,
    chosen: list[InstanceRecord],
    by_ref: dict[str, InstanceRecord],
    where: str,
) -> dict[str, worktrees.Worktree]:
    """A worktree for each task that asks for one, made before anything is recorded (all,
    or none: a failure removes the ones made)."""
    made: dict[str, worktrees.Worktree] = {}
    try:
        for task, task_id in zip(tasks, ids, strict=True):
            if not (task.worktree or options.worktree):
                continue
            pinned = by_ref.get(task.instance) if task.instance else None
            remote = [r.name for r in ([pinned] if pinned else chosen) if r.spec.remote]
            if remote:
                raise UsageError(
                    f"{where}:{task.line}: a worktree is made on this machine, and "
                    f"{remote[0]} is a remote instance: pin worktree tasks to local ones "
                    "(`instance` in the file, or --instance)"
                )
            directory = task.dir
            if directory is None:
                pinned = by_ref.get(task.instance) if task.instance else None
                dirs = {pinned.spec.dir} if pinned else {c.spec.dir for c in chosen}
                if len(dirs) != 1:
                    raise UsageError(
                        f"{where}:{task.line}: a worktree task needs a dir (the instances work "
                        "in different directories)"
                    )
                directory = dirs.pop()
            request = worktrees.WorktreeRequest(base=task.base or options.base)
            try:
                made[task_id] = worktrees.create(
                    fleet.settings.worktrees_dir, str(Path(directory).expanduser()), request,
                    task_id,
                )  # fmt: skip
            except OcmError as exc:
                raise type(exc)(f"{where}:{task.line}: {exc}") from None
    except BaseException:
        for tree in made.values():
            with contextlib.suppress(OcmError):
                worktrees.remove(tree)
        raise
    return made


def _check_out(out: str | None) -> None:
    """`--out` must be (or become) a directory we can write, before anything is recorded."""
    if out is None:
        return
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {existing} is not a writable directory")


def _candidates(fleet: Fleet, refs: list[str]) -> list[InstanceRecord]:
    if refs:
        return [fleet.resolve_running(ref) for ref in dict.fromkeys(refs)]
    return fleet.running()


# -- running ------------------------------------------------------------------------------
class BatchRun:
    """Executes (or resumes) one recorded batch; `claim` makes this process its runner."""

    def __init__(
        self,
        fleet: Fleet,
        store: TaskStore,
        batch: Batch,
        *,
        listener: Listener | None = None,
        cancel: asyncio.Event | None = None,
        observer_for: Callable[[TaskRecord], Observer] | None = None,
        checkpoint: Checkpoint = _no_checkpoint,
    ) -> None:
        self.fleet = fleet
        self.store = store
        self.persist = settling(store.asave)  # a finished task's worktree is settled first
        self.batch = batch
        self.options = BatchOptions.from_dict(batch.options)
        self.listener = listener
        # The caller's event (its Ctrl-C) is relayed into our own, which a cancel requested
        # in the registry sets too: the caller can still tell its interrupt from one of those.
        self.asked = cancel
        self.cancel = asyncio.Event()
        self.observer_for = observer_for
        self.checkpoint = checkpoint
        self.records = store.list_tasks(batch_id=batch.id)
        self.inflight: dict[str, int] = {}
        self.external_busy: dict[str, int] = {}
        self.failed_on: dict[str, set[str]] = {}
        self.not_before: dict[str, float] = {}  # task id -> when it may be tried again
        self.returning_since: float | None = None  # when the queue began to wait for a restart
        self._position = {r.id: i for i, r in enumerate(self.records)}
        self.hub: EventHub | None = None  # one event stream per instance, while it runs
        self.control = control_for(fleet, store)  # the fleet's shared slots, recovery, fallback
        #: What the batch's finished tasks spent (`--batch-max-cost`).
        self.spent = sum(r.cost or 0.0 for r in self.records if r.status.final)

    @classmethod
    def claim(
        cls,
        fleet: Fleet,
        store: TaskStore,
        batch_id: str,
        *,
        requeue_cancelled: bool = False,
        **kwargs: Any,
    ) -> BatchRun:
        """Claim the batch for this process (atomically; refused while another live process
        runs it), and reopen what a previous runner left retryable."""
        me = process.identity_of(os.getpid())
        if me is None:
            raise OcmError("cannot read this process's identity")
        batch = store.claim_batch(
            batch_id, me, process.is_alive, requeue_cancelled=requeue_cancelled
        )
        run = cls(fleet, store, batch, **kwargs)
        for record in run.records:
            if record.status is TaskStatus.FAILED and (record.error or {}).get(RETRYABLE):
                record.status, record.error, record.finished_at = TaskStatus.PENDING, None, None
                store.save(record)
        return run

    def _notify(self, task: TaskRecord | None = None) -> None:
        if self.listener is None:
            return
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record.status.value] = counts.get(record.status.value, 0) + 1
        self.listener(BatchProgress(total=len(self.records), counts=counts, task=task))

    async def run(self) -> BatchSummary:
        names = self.options.instances
        candidates = await asyncio.to_thread(_candidates, self.fleet, names)
        limit = self.options.concurrency or max(1, len(candidates) * self.options.per_instance)
        queue = [r for r in self.records if not r.status.final]
        self._notify()
        async with EventHub() as hub:
            self.hub = hub
            self.external_busy = await busy_counts(self.fleet, candidates)
            running: set[asyncio.Task[TaskRecord | None]] = set()
            if self.asked is not None and self.asked.is_set():
                self.cancel.set()
            relay = asyncio.create_task(self._relay_cancel())
            try:
                await self._schedule(queue, running, candidates, limit)
            finally:
                relay.cancel()
                # Left early (this run cancelled by its caller, or dying): its tasks end
                # with it, where they are, as with a kill; `ocm batch resume` goes on.
                await _stop_all(running)
        for record in self.records:
            if not record.status.final:
                record.status = TaskStatus.CANCELLED
                record.finished_at = time.time()
                await self.store.asave(record)
        status = BatchStatus.CANCELLED if self.cancel.is_set() else BatchStatus.COMPLETED
        await asyncio.to_thread(self.store.set_batch_status, self.batch.id, status)
        self._notify()
        result = await asyncio.to_thread(summary, self.store, self.batch.id)
        await asyncio.to_thread(self._write_out, result)
        return result

    async def _relay_cancel(self) -> None:
        if self.asked is not None:
            await self.asked.wait()
            self.cancel.set()

    async def _schedule(
        self,
        queue: list[TaskRecord],
        running: set[asyncio.Task[TaskRecord | None]],
        candidates: list[InstanceRecord],
        limit: int,
    ) -> None:
        """Place the queued tasks as room comes, until every one ended (or a cancel)."""
        names = self.options.instances
        while queue or running:
            if self.cancel.is_set() or await self._cancel_requested():
                self.cancel.set()
                break
            self._within_budget(queue)
            placed = True
            while queue and len(running) < limit and placed:
                placed = False
                for record in list(queue):
                    if self.not_before.get(record.id, 0.0) > time.monotonic():
                        continue
                    instance = self._place(record, candidates)
                    if instance is None:
                        continue
                    queue.remove(record)
                    # Count it now: the task only starts at the next await.
                    self.inflight[instance.name] = self.inflight.get(instance.name, 0) + 1
                    running.add(asyncio.create_task(self._run_one(record, instance)))
                    placed = True
                    break
            if not running and not self._waiting(queue) and not await self._returning(names):
                # Nothing can be placed: every instance the rest may use is gone.
                for record in queue:
                    await self._fail(record, "NoInstance", "no running instance can take it",
                                     retryable=not record.prompted)  # fmt: skip
                queue.clear()
                break
            if not running:
                await asyncio.sleep(0.2)  # tasks wait for a retry delay or an instance
            else:
                done, _ = await asyncio.wait(
                    running, timeout=0.5, return_when=asyncio.FIRST_COMPLETED
                )
                for finished in done:
                    running.discard(finished)
                    retry = finished.result()
                    if retry is not None:
                        queue.insert(0, retry)
            candidates = await asyncio.to_thread(self._live_candidates, names)
        if running:  # cancelled: the runners abort their sessions
            await asyncio.wait(running)

    async def _returning(self, names: list[str]) -> bool:
        """An instance the queue may use is being brought back by its keeper (a restart):
        the queue waits for it, up to the recover timeout from when the wait began."""
        back = await asyncio.to_thread(self.fleet.returning, names)
        if not back:
            self.returning_since = None
            return False
        now = time.monotonic()
        if self.returning_since is None:
            self.returning_since = now
        return now - self.returning_since < self.options.recover_timeout

    def _within_budget(self, queue: list[TaskRecord]) -> None:
        """A batch whose budget is spent starts no new task: those not started yet end
        `budget_exceeded`, saying how many were left (running ones go on)."""
        fresh = [r for r in queue if not (r.prompted or r.sending)]
        gate = batch_gate(self.options.batch_max_cost, self.spent, waiting=len(fresh))
        if gate.may_start or not fresh:
            return
        for record in fresh:
            queue.remove(record)
            record.status = TaskStatus.BUDGET_EXCEEDED
            record.error = {"name": "BatchBudgetSpent", "message": gate.message,
                            "spent": gate.spent, "limit": gate.limit}  # fmt: skip
            record.finished_at = time.time()
            self.store.save(record)
            self._notify(record)
            self._forget_result(record)

    def _waiting(self, queue: list[TaskRecord]) -> bool:
        """Tasks in the queue that wait for a retry delay or for their instance to return."""
        now = time.monotonic()
        return any(self.not_before.get(r.id, 0.0) > now for r in queue)

    def _live_candidates(self, names: list[str]) -> list[InstanceRecord]:
        """The instances the batch may use, as they are now (a restarted one comes back)."""
        if names:
            found = []
            for ref in dict.fromkeys(names):
                try:
                    found.append(self.fleet.resolve_running(ref))
                except OcmError:
                    continue
            return found
        return self.fleet.running()

    async def _cancel_requested(self) -> bool:
        try:
            batch = await asyncio.to_thread(self.store.batch, self.batch.id)
        except OcmError:
            return False  # unreadable for a moment: carry on; Ctrl-C still works
        return batch.cancel_requested is not None

    def _place(self, record: TaskRecord, candidates: list[InstanceRecord]) -> InstanceRecord | None:
        """Where the task runs now, or None to wait for room."""
        per = self.options.per_instance
        # A prompt that reached (or may have reached) a server is followed there; a pinned
        # task waits for its instance.
        # A continuation pending (stopped during a backoff) goes on in its session too.
        sent = (record.prompted or record.sending or record.continuation) and record.session_id
        bound = record.instance if sent else record.pinned
        if bound is not None:
            instance = next((c for c in candidates if c.name == bound), None)
            if instance is None:
                return None
            if self.inflight.get(instance.name, 0) >= per and not sent:
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

    async def _run_one(self, record: TaskRecord, instance: InstanceRecord) -> TaskRecord | None:
        """Run one task (already counted in inflight); return it if it should be queued again."""
        name = instance.name
        custody = custodies.of_instance(self.fleet, instance)  # who holds its prompt
        try:
            client = self.fleet.client(instance)
            if record.session_id is None or record.instance != name:
                record.instance, record.url = name, instance.url
                record.session_id, record.prompted, record.sending = None, False, False
                record.message_id = record.continuation = None
                record.directory = record.directory or instance.spec.dir
                # The instance's task defaults (its fleet file's) for what the task leaves out.
                record.model = record.model or instance.spec.model
                record.agent = record.agent or instance.spec.agent
            # A task left `sending` is looked up on its server by the runner before it
            # sends anything (delivery.py).
            self._notify(record)
            runner = TaskRunner(
                client=client,
                record=record,
                persist=self.persist,
                observer=self.observer_for(record) if self.observer_for else Observer(),
                auto_approve=self.options.auto_approve,
                cancel=self.cancel,
                checkpoint=self.checkpoint,
                hub=self.hub,
                custody=custody,
                control=self.control,
            )
            await runner.run()
            if (
                record.status is TaskStatus.ABORTED
                and not self.cancel.is_set()
                and await asyncio.to_thread(self._went_down, instance)
            ):
                # Not our abort nor the user's: stopping the server (a restart) ended the
                # turn. Run the task again, on whichever instance has room.
                return await self._requeue(record, name, count_failure=False)
            if (
                record.status is TaskStatus.FAILED
                and record.attempts <= self.options.retries
                and not self.cancel.is_set()
            ):
                return await self._requeue(record, name)
        except SessionNotFound:
            # The session is gone (deleted, or lost with a server's data): run it afresh.
            return await self._requeue(record, name, count_failure=False)
        except ServerError as exc:
            return await self._infrastructure(record, name, exc, custody)
        finally:
            self.inflight[name] -= 1
            self._notify(record)
            if record.status.final:
                self.spent += record.cost or 0.0
                self._forget_result(record)
        return None

    def _forget_result(self, record: TaskRecord) -> None:
        """A finished task is stored: keep only its status here, so that a long batch does
        not hold every result in memory."""
        self.records[self._position[record.id]] = TaskRecord(
            record.id, "", record.status, record.created_at, batch_id=record.batch_id
        )

    async def _requeue(
        self, record: TaskRecord, name: str, *, count_failure: bool = True
    ) -> TaskRecord:
        if count_failure:
            self.failed_on.setdefault(record.id, set()).add(name)
        record.status = TaskStatus.PENDING
        record.session_id, record.prompted, record.sending = None, False, False
        record.message_id = None  # a new attempt, in a new session: a new message
        record.continuation = None  # ... that says the prompt
        record.error = None
        await self.store.asave(record)
        return record

    async def _infrastructure(
        self, record: TaskRecord, name: str, exc: ServerError, custody: Custody
    ) -> TaskRecord | None:
        if isinstance(exc, TurnLost):
            # The server process that took it is gone, and the turn with it: run it again.
            return await self._requeue(record, name, count_failure=False)
        if record.prompted or record.sending:
            # It reached (or may have reached) the server: never send it elsewhere. Wait for
            # the instance to come back (a restart), then see what became of the turn.
            return await self._recover(record, name, exc, custody)
        if record.attempts <= INFRA_RETRIES and not self.cancel.is_set():
            return await self._requeue(record, name)
        await self._fail(record, "InstanceUnreachable", f"{exc}; `ocm batch resume` retries it",
                         retryable=True)  # fmt: skip
        return None

    async def _recover(
        self, record: TaskRecord, name: str, exc: ServerError, custody: Custody
    ) -> TaskRecord | None:
        deadline = time.monotonic() + self.options.recover_timeout
        while time.monotonic() < deadline and not self.cancel.is_set():
            instance = await asyncio.to_thread(self._running_instance, name)
            if instance is None and await asyncio.to_thread(self._host_lost, name):
                # Its host left the Ray cluster: the turn died with it. Run it elsewhere.
                return await self._requeue(record, name, count_failure=False)
            if instance is not None:
                try:
                    verdict = await self._look(record, instance, custody)
                except TurnLost:
                    verdict = "lost"
                except ServerError:
                    verdict = "unknown"  # it went quiet again while followed: look again
                if verdict == "finished":
                    return None
                if verdict == "lost":
                    # The turn died with its server: run the task again (a new attempt).
                    return await self._requeue(record, name, count_failure=False)
            await asyncio.sleep(0.5)  # waiting for the instance to return, with a deadline
        if self.cancel.is_set():
            return None
        await self._fail(
            record,
            "InstanceLost",
            f"{exc}; {name} did not come back within {self.options.recover_timeout:g} s: "
            "`ocm batch resume` checks the task again when it is back",
            retryable=True,
        )
        return None

    def _went_down(self, instance: InstanceRecord) -> bool:
        """Since the task was placed, was its server asked to stop, or replaced?"""
        try:
            now = self.fleet.resolve(instance.name)
        except OcmError:
            return True
        return now.desired == "stopped" or now.server != instance.server

    def _host_lost(self, name: str) -> bool:
        """A cluster instance whose node left the cluster (never true for other instances)."""
        try:
            record = self.fleet.resolve(name)
        except OcmError:
            return False
        if not record.spec.node:
            return False
        from ..cluster.link import host_lost

        return host_lost(self.fleet, record)

    def _running_instance(self, name: str) -> InstanceRecord | None:
        try:
            record = self.fleet.resolve(name)
        except OcmError:
            return None
        return record if record.state is State.RUNNING and self.fleet.up(record) else None

    async def _look(self, record: TaskRecord, instance: InstanceRecord, custody: Custody) -> str:
        """ "finished" (recorded, or followed here to its end), "lost" (run it again) or
        "unknown" (look again later).

        Lost only when the server process that took the prompt is gone (custody.py): while
        it runs, a prompt not there yet may still come (its POST waits in a socket of a
        stopped or swamped server) and a stored one that is idle and unanswered may only
        not have started; both are followed in their own session, never sent in a new one.
        """
        assert record.session_id is not None
        client = self.fleet.client(instance)
        try:
            messages = await client.messages(record.session_id)
            busy = await client.session_status(record.directory)
        except SessionNotFound:
            return "lost"
        except ServerError:
            return "unknown"
        gone = await custody.gone()
        # By its message id first; a batch task's session is its own, so its last user
        # message is the prompt, even when a server killed mid-turn lost the message's
        # text (seen on 1.18.33) or the record predates message ids.
        user = user_message(messages, record) or next(
            (m for m in reversed(messages) if m.role == "user"), None
        )
        if user is None and record.message_id and await _parked(client, record):
            # Taken and held undelivered (2.x's inbox outlives its server process): not lost
            # with the process; followed, the runner wakes it in its session (runs it once).
            record.prompted, record.sending = True, False
            return await self._follow(record, client, custody)
        if user is None:
            if gone or (gone is None and not record.sending):
                return "lost"  # it died with its server (or a remote lost what it had)
            if not record.sending:
                return "unknown"  # it was there: look again
            # Maybe not taken yet: the runner looks it up by its id, and sends it again
            # with that id, into its session, only once the server provably lacks it
            # (delivery.py); a late first copy then runs no second turn.
            return await self._follow(record, client, custody)
        # The prompt is on the server: following it never sends it again.
        record.prompted, record.sending = True, False
        if record.session_id in busy:
            return await self._follow(record, client, custody)
        turn = build_turn(messages, user.id)
        if not turn.completed:
            if gone:
                return "lost"  # the turn died with its server
            # Taken and not started yet, or not seen running by a slow server: follow it
            # (the runner says when its server proves gone, or after a long idle grace).
            return await self._follow(record, client, custody)
        aborted = error_name(turn.error) == ABORTED_ERROR and not self.cancel.is_set()
        if aborted and gone is not False:
            return "lost"  # aborted by its server going down (a restart), not by us
        runner = TaskRunner(client=client, record=record, persist=self.persist,
                            observer=Observer())  # fmt: skip
        state = TurnState(session_id=record.session_id, user_message_id=user.id)
        await runner.finish(state, None, 0.0)
        return "finished"

    async def _follow(
        self, record: TaskRecord, client: AsyncOpencodeClient, custody: Custody
    ) -> str:
        """Follow a prompt already sent to its end, in its session (never a new attempt)."""
        runner = TaskRunner(
            client=client, record=record, persist=self.persist, observer=Observer(),
            auto_approve=self.options.auto_approve, cancel=self.cancel, custody=custody,
            went_away=True,
        )  # fmt: skip
        record.attempts -= 1  # following is not a new attempt
        await runner.run()
        return "finished"

    async def _fail(self, record: TaskRecord, name: str, message: str, *,
                    retryable: bool = False) -> None:  # fmt: skip
        record.status = TaskStatus.FAILED
        record.error = {"name": name, "message": message}
        if retryable:
            record.error[RETRYABLE] = True
        record.finished_at = time.time()
        await self.store.asave(record)

    def _write_out(self, result: BatchSummary) -> None:
        if not self.options.out:
            return
        out = Path(self.options.out)
        out.mkdir(parents=True, exist_ok=True)
        for record in self.store.list_tasks(batch_id=self.batch.id):
            _write_json(out / f"{record.task_id or record.id}.json", record.to_dict())
        _write_json(out / "summary.json", result.to_dict())


async def _stop_all(tasks: set[asyncio.Task[TaskRecord | None]]) -> None:
    """Cancel the tasks and wait until each has ended; what they raised is retrieved and
    dropped (the caller is on its way out with its own reason)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled():
            task.exception()
    tasks.clear()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


async def _parked(client: AsyncOpencodeClient, record: TaskRecord) -> bool:
    """The task's prompt is held by its server undelivered (2.x: `client.parked`)."""
    assert record.session_id is not None
    assert record.message_id is not None
    try:
        return await client.parked(record.session_id, record.message_id)
    except ServerError:
        return False


async def run_batch(
    fleet: Fleet,
    store: TaskStore,
    batch_id: str,
    *,
    listener: Listener | None = None,
    cancel: asyncio.Event | None = None,
    checkpoint: Checkpoint | None = None,
    requeue_cancelled: bool = False,
) -> BatchSummary:
    """Claim a recorded batch for this process (in a worker thread) and run it to its end."""
    run = await asyncio.to_thread(
        BatchRun.claim, fleet, store, batch_id, listener=listener, cancel=cancel,
        requeue_cancelled=requeue_cancelled, checkpoint=checkpoint or _no_checkpoint,
    )  # fmt: skip
    return await run.run()


async def create_and_run(
    fleet: Fleet,
    store: TaskStore,
    tasks: Sequence[BatchTask] | str,
    options: BatchOptions | None = None,
    *,
    source: str | None = None,
    listener: Listener | None = None,
    cancel: asyncio.Event | None = None,
) -> BatchSummary:
    """Record a batch (`create_batch`), then run it (`run_batch`); a submission key used
    before returns that batch as it stands instead (it is not run twice)."""
    key = options.key if options is not None else None
    if key is not None:
        found = await asyncio.to_thread(task_for_key, fleet.registry, key)
        if found is not None:
            return await asyncio.to_thread(summary, store, found)
    created, fresh = await asyncio.to_thread(_create, fleet, store, tasks, options, source=source)
    if not fresh:
        return created
    return await run_batch(fleet, store, created.id, listener=listener, cancel=cancel)


async def cancel_batch(
    fleet: Fleet, store: TaskStore, batch_id: str, *, timeout: float = 30.0
) -> BatchSummary:
    """Ask the batch's runner to cancel (it aborts running tasks, cancels the rest) and wait
    for it; a batch whose runner is gone is cancelled here."""
    batch = await asyncio.to_thread(store.request_cancel, batch_id)
    if BatchStatus(batch.status).final:
        raise ConflictError(f"batch {batch_id} is already {batch.status}")
    deadline = time.monotonic() + timeout
    while process.is_alive(batch.runner) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # waiting for the runner to act, with a deadline
        batch = await asyncio.to_thread(store.batch, batch_id)
        if BatchStatus(batch.status).final:
            return await asyncio.to_thread(summary, store, batch_id)
    if process.is_alive(batch.runner):
        raise ConflictError(f"batch {batch_id}: its runner did not cancel within {timeout:.0f} s")
    for record in await asyncio.to_thread(store.list_tasks, batch_id=batch_id):
        if not record.status.final:
            if record.prompted and record.session_id and record.instance:
                await _abort_quietly(fleet, record)
            record.status = TaskStatus.CANCELLED
            record.finished_at = time.time()
            record.error = {"name": "cancelled", "message": "batch cancelled"}
            await store.asave(record)
    await asyncio.to_thread(store.set_batch_status, batch_id, BatchStatus.CANCELLED)
    return await asyncio.to_thread(summary, store, batch_id)


async def _abort_quietly(fleet: Fleet, record: TaskRecord) -> None:
    """Abort a task's session that a dead runner left running (best effort)."""
    assert record.session_id is not None
    assert record.instance is not None
    try:
        instance = await asyncio.to_thread(fleet.resolve, record.instance)
        await fleet.client(instance, timeout=5.0).abort(record.session_id)
    except OcmError:
        return
