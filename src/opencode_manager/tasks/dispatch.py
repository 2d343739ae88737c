"""Dispatching single tasks: pick an instance, run or start a task, wait for it, read results."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..client import AsyncOpencodeClient
from ..errors import (
    ConflictError,
    NotFoundError,
    ServerError,
    ServerUnreachable,
    SessionNotFound,
    UsageError,
)
from ..instances import opencodeconfig
from ..instances.fleet import Fleet
from ..limits.keys import claim_key, forget_keys, task_for_key, validate_key
from ..limits.table import slot_owners
from ..models import AskPolicy, InstanceRecord, TaskRecord, TaskStatus
from . import control, custody, placement, structured
from . import worktree as worktrees
from .runner import Checkpoint, Observer, TaskRunner, _no_checkpoint, settling
from .store import TaskStore, left_queued, listed_stale, may_have_ended, new_id
from .worktree import WorktreeRequest

DEFAULT_MAX_RETRIES = 5
#: Placement asks each instance how busy it is: a probe with its own short deadline (and no
#: retry), so a stalled instance is passed over instead of holding the task back.
PLACEMENT_PROBE_TIMEOUT = 5.0
#: How long a task waits for an instance its keeper is restarting, beyond the instance's own
#: start timeout (a restart is a start after a backoff).
RETURN_GRACE = 60.0
RETURN_POLL = 0.25


@dataclass
class TaskOptions:
    """How to run one task (all optional)."""

    instance: str | None = None  # name, port or URL; default: the least busy running one
    session_id: str | None = None  # continue this session
    model: str | None = None  # provider/model
    agent: str | None = None
    directory: str | None = None  # the session's project directory (default: the instance's)
    timeout: float | None = None  # abort the session after this many seconds
    auto_approve: bool = False  # approve permission asks instead of rejecting them
    #: Leave permission and question asks pending for somebody else to answer (an MCP
    #: client with `session_permission_reply`, a person in `opencode attach`).
    leave_asks: bool = False
    #: Provider retries (HTTP 5xx/429, connection errors) before the task fails. OpenCode
    #: 1.18.33 gives up by itself after 5; older versions retry without end.
    max_retries: int | None = DEFAULT_MAX_RETRIES
    #: Run in a fresh git worktree of the task's repository, on a branch of its own.
    worktree: WorktreeRequest | None = None
    #: A JSON schema: the answer is a structured object, validated (tasks/structured.py).
    schema: dict[str, Any] | None = None
    # -- provider control (tasks/control.py) --
    priority: int = 0  # its place in its provider's queue: higher first (`--priority`)
    max_cost: float | None = None  # USD: interrupted past it, budget_exceeded (`--max-cost`)
    max_tokens: int | None = None  # every token billed (`--max-tokens`)
    recover: int | None = None  # continuations after transient provider errors (`--recover`)
    fallbacks: list[str] = dataclasses.field(default_factory=list)  # `--fallback`, in order
    key: str | None = None  # idempotent submission: the same key returns the same task


def validate(prompt: str, options: TaskOptions) -> None:
    if not prompt.strip():
        raise UsageError("empty prompt: say what the agent should do")
    if options.schema is not None:
        structured.check_schema(options.schema)
    if options.auto_approve and options.leave_asks:
        raise UsageError("--auto-approve and --leave-asks contradict each other: choose one")
    if options.timeout is not None and options.timeout <= 0:
        raise UsageError(f"invalid --timeout {options.timeout:g}: must be above 0")
    if options.model is not None and "/" not in options.model:
        raise UsageError(f"invalid --model {options.model!r}: expected PROVIDER/MODEL")
    if options.session_id is not None and not options.session_id.startswith("ses"):
        raise UsageError(f"invalid --session {options.session_id!r}: session ids start with ses_")
    if options.max_retries is not None and options.max_retries < 0:
        raise UsageError(f"invalid --max-retries {options.max_retries}: must be 0 or more")
    control.validate(
        priority=options.priority, recover=options.recover, fallbacks=options.fallbacks,
        max_cost=options.max_cost, max_tokens=options.max_tokens,
    )  # fmt: skip
    if options.key is not None:
        validate_key(options.key)


async def busy_counts(fleet: Fleet, records: Sequence[InstanceRecord]) -> dict[str, int]:
    """Busy sessions per instance (in its project directory); unreachable ones are left out."""

    async def one(record: InstanceRecord) -> tuple[str, int | None]:
        endpoint = fleet.endpoint(record)
        if endpoint is None:
            return record.name, None
        try:
            client = fleet.client(endpoint, timeout=PLACEMENT_PROBE_TIMEOUT)
            status = await client.session_status(record.spec.dir)
        except ServerError:
            return record.name, None
        return record.name, len(status)

    pairs = await asyncio.gather(*(one(r) for r in records))
    return {name: count for name, count in pairs if count is not None}


async def choose_instance(fleet: Fleet, ref: str | None, *, local: bool = False) -> InstanceRecord:
    """The named instance, or the least busy running one (`local`: not a remote one)."""
    if ref is not None:
        return await when_back(fleet, ref)
    candidates = [
        r for r in await asyncio.to_thread(fleet.running) if not (local and r.spec.remote)
    ]
    if not candidates:
        raise NotFoundError("no running instance to send the task to; start one with `ocm start`")
    if len(candidates) == 1:
        return candidates[0]  # the only choice, however busy: asking would cost a round trip
    busy = await busy_counts(fleet, candidates)
    name = placement.least_busy(
        [placement.Slot(r.name, busy.get(r.name, 1 << 20)) for r in candidates]
    )
    return next(r for r in candidates if r.name == name)


async def when_back(fleet: Fleet, ref: str) -> InstanceRecord:
    """The instance once its keeper has brought it back (a restart after a crash or missed
    health checks: slow is not failed); raises what `resolve_running` says when it is not
    coming back, or has not within its start timeout and RETURN_GRACE."""
    deadline: float | None = None
    allowed = RETURN_GRACE
    while True:
        try:
            return await asyncio.to_thread(fleet.resolve_running, ref)
        except ConflictError as exc:
            if not await asyncio.to_thread(fleet.returning, [ref]):
                # Not coming back, or back already (between the two reads): say which.
                return await asyncio.to_thread(fleet.resolve_running, ref)
            record = await asyncio.to_thread(fleet.resolve, ref)
            now = time.monotonic()
            if deadline is None:
                allowed = (record.start_timeout or 0.0) + RETURN_GRACE
                deadline = now + allowed
            elif now >= deadline:
                raise ConflictError(
                    f"{exc}: its keeper was restarting it, and it did not come back within "
                    f"{allowed:.0f} s; see `ocm events {record.name}`",
                    instance=record.name,
                ) from exc
        await asyncio.sleep(RETURN_POLL)  # waiting for the restart, with a deadline


def new_record(
    prompt: str,
    options: TaskOptions,
    instance: InstanceRecord,
    *,
    batch_id: str | None = None,
    task_id: str | None = None,
) -> TaskRecord:
    return TaskRecord(
        id=new_id("t"),
        prompt=prompt,
        status=TaskStatus.PENDING,
        created_at=time.time(),
        batch_id=batch_id,
        task_id=task_id,
        instance=instance.name,
        url=instance.url,
        session_id=options.session_id,
        directory=options.directory or instance.spec.dir,
        model=options.model,
        agent=options.agent,
        timeout=options.timeout,
        max_retries=options.max_retries,
        schema=options.schema,
        on_ask=ask_policy(options).value,
        priority=options.priority,
        max_cost=options.max_cost,
        max_tokens=options.max_tokens,
        recover=options.recover,
        fallbacks=list(options.fallbacks),
        key=options.key,
        provider=control.provider_of(options.model),
    )


def control_for(fleet: Fleet, store: TaskStore | None = None) -> control.Control:
    """Provider control over the fleet's registry: the slots every front shares (with the
    store: a waiter looks whether detached tasks holding slots have ended, `settle`)."""
    return control.Control(
        slots=control.slots_for(fleet.registry, fleet.settings),
        default_model=lambda record: instance_model(fleet, record),
        settle=None if store is None else functools.partial(settle, fleet, store),
    )


async def settle(fleet: Fleet, store: TaskStore, task_ids: list[str]) -> None:
    """The standalone tasks among `task_ids` still recorded running are checked against
    their server (`refresh_task`): one that ended there is recorded, which frees its slot.
    A detached turn has nobody else to see its end before `ocm wait`."""

    async def one(task_id: str) -> None:
        try:
            record = await asyncio.to_thread(store.get, task_id)
        except NotFoundError:
            return
        if listed_stale(record):
            await refresh_task(fleet, store, task_id)

    await asyncio.gather(*(one(task_id) for task_id in task_ids[:8]))


def instance_model(fleet: Fleet, record: TaskRecord) -> str | None:
    """The model a task that names none runs on: its instance's config says (the user's
    environment with the instance's --env over it, as its keeper started the server); None
    for a remote instance, whose config is not here to read."""
    found = fleet.registry.find(record.instance) if record.instance else None
    if found is None or found.spec.remote:
        return None
    env = {**os.environ, **dict(found.spec.env)}
    return opencodeconfig.default_model(env, record.directory or found.spec.dir)


KEY_WAIT = 10.0  # how long a resubmission waits for the first submission's record


async def submitted(store: TaskStore, registry: Any, key: str | None) -> TaskRecord | None:
    """The task an earlier submission with `key` made (idempotent submission), if any."""
    if key is None:
        return None
    found = await asyncio.to_thread(task_for_key, registry, key)
    return None if found is None else await _recorded(store, found)


async def _recorded(store: TaskStore, task_id: str) -> TaskRecord:
    """A keyed task's record: the first submission claims the key just before it records
    the task, so a resubmission racing it waits for the record (briefly)."""
    deadline = time.monotonic() + KEY_WAIT
    while True:
        try:
            return await asyncio.to_thread(store.get, task_id)
        except NotFoundError:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.05)  # polling for the first submission's record, with a deadline


def with_instance_defaults(options: TaskOptions, instance: InstanceRecord) -> TaskOptions:
    """The instance's task defaults (from its fleet file) for what the task does not say."""
    model = options.model or instance.spec.model
    agent = options.agent or instance.spec.agent
    if (model, agent) == (options.model, options.agent):
        return options
    return dataclasses.replace(options, model=model, agent=agent)


def ask_policy(options: TaskOptions) -> AskPolicy:
    if options.leave_asks:
        return AskPolicy.LEAVE
    return AskPolicy.APPROVE if options.auto_approve else AskPolicy.REJECT


def no_structured_output(name: str, client: AsyncOpencodeClient) -> str:
    return (
        f"invalid --schema: {name} runs OpenCode {client.line.label}, which has no structured "
        "output; run it on a 1.x instance (-i NAME) or leave out --schema"
    )


async def check_agent(client: AsyncOpencodeClient, agent: str, directory: str | None) -> None:
    """An agent the instance does not have is a usage error here, not a stack trace from
    OpenCode after the prompt went out."""
    known = [
        str(item.get("name"))
        for item in await client.agents(directory)
        if isinstance(item, dict) and item.get("name")
    ]
    if known and agent not in known:
        raise UsageError(f"invalid --agent {agent!r}: this instance has {', '.join(sorted(known))}")


async def check_model(client: AsyncOpencodeClient, model: str, directory: str | None) -> None:
    """A model the instance does not have is a usage error before anything is sent, naming
    some it has, not a task failed by OpenCode's "Model unavailable" after the prompt."""
    try:
        known = await client.models(directory)
    except ServerError:  # a server that cannot list them: OpenCode itself will say
        return
    if known and model not in known:
        provider = model.partition("/")[0]
        near = sorted(k for k in known if k.partition("/")[0] == provider) or sorted(known)
        shown = ", ".join(near[:MODELS_SHOWN]) + (
            f" and {len(near) - MODELS_SHOWN} more" if len(near) > MODELS_SHOWN else ""
        )
        raise UsageError(f"invalid --model {model!r}: this instance has {shown}")


#: How many of an instance's models an invalid --model error names.
MODELS_SHOWN = 6


async def run_task(
    fleet: Fleet,
    store: TaskStore,
    prompt: str,
    options: TaskOptions,
    *,
    observer: Observer | None = None,
    cancel: asyncio.Event | None = None,
    detach: bool = False,
    checkpoint: Checkpoint | None = None,
) -> TaskRecord:
    """Run a task to its end (or, with detach, only until the prompt is sent). With a
    submission key already used, the task that key made is returned as it stands."""
    validate(prompt, options)
    earlier = await submitted(store, fleet.registry, options.key)
    if earlier is not None:
        return earlier
    instance = await choose_instance(fleet, options.instance, local=options.worktree is not None)
    options = with_instance_defaults(options, instance)
    client = fleet.client(instance)
    if options.schema is not None and not client.structured_output:
        raise UsageError(no_structured_output(instance.name, client))
    if options.agent is not None:
        await check_agent(client, options.agent, options.directory or instance.spec.dir)
    if options.model is not None:
        await check_model(client, options.model, options.directory or instance.spec.dir)
    if options.session_id is not None:
        await client.session(options.session_id)  # SessionNotFound if it is not there
    record = new_record(prompt, options, instance)
    if options.key is not None:
        claimed = await asyncio.to_thread(claim_key, fleet.registry, options.key, record.id)
        if claimed != record.id:  # another submission with the key won the race
            return await _recorded(store, claimed)
    try:
        if options.worktree is not None and instance.spec.remote:
            raise UsageError(
                f"--worktree makes a worktree on this machine, and {instance.name} is a remote "
                "instance; pick a local one with -i"
            )
        if options.worktree is not None:
            assert record.directory is not None
            tree = await asyncio.to_thread(
                worktrees.create, fleet.settings.worktrees_dir, record.directory,
                options.worktree, record.id,
            )  # fmt: skip
            record.directory, record.worktree = tree.directory, tree.to_dict()
        record = await store.aadd(record)
    except BaseException:
        if options.key is not None:  # nothing was recorded: the key names nothing yet
            await asyncio.to_thread(forget_keys, fleet.registry, [record.id])
        raise
    runner = TaskRunner(
        client=client,
        record=record,
        persist=settling(store.asave),
        observer=observer or Observer(),
        cancel=cancel,
        checkpoint=checkpoint or _no_checkpoint,
        custody=custody.of_instance(fleet, instance),
        control=control_for(fleet, store),
    )
    try:
        try:
            return await _drive(runner, detach)
        except ServerUnreachable:
            if record.session_id is not None or record.prompted or record.sending:
                raise  # past its session: the runner's own recovery has had its say
            # Lost while making its session, before anything was sent (its server went
            # away: a restart by its keeper): once the instance is back, start again.
            instance = await when_back(fleet, instance.name)
            runner = dataclasses.replace(
                runner, client=fleet.client(instance), custody=custody.of_instance(fleet, instance)
            )
            return await _drive(runner, detach)
    except (ServerError, SessionNotFound) as exc:
        ended = await ended_by(store, record, exc)
        if detach:
            # Nothing was started: an id to wait for would be a lie (it printed `None`).
            raise
        return ended


async def _drive(runner: TaskRunner, detach: bool) -> TaskRecord:
    if detach:  # send it (in its turn for a provider slot) and return; `ocm wait` follows it
        assert runner.control is not None
        await runner.control.send(runner)
        return runner.record
    return await runner.run()


async def ended_by(store: TaskStore, record: TaskRecord, exc: Exception) -> TaskRecord:
    """A task that ended because of its server or its session, not the model: record why."""
    record.status = TaskStatus.FAILED
    if isinstance(exc, SessionNotFound):
        record.error = {
            "name": "SessionDeleted",
            "message": f"session {exc.session_id} was deleted on {record.instance}",
        }
    else:
        record.error = {
            "name": "InstanceUnreachable" if isinstance(exc, ServerUnreachable) else "ServerError",
            "message": str(exc),
            "status_code": exc.status_code if isinstance(exc, ServerError) else None,
        }
    record.sending = False
    record.finished_at = time.time()
    await store.asave(record)
    return record


async def refresh_task(fleet: Fleet, store: TaskStore, task_id: str) -> TaskRecord:
    """The stored record; a running one is completed from the server if it has ended there."""
    from .tracker import TurnState

    record = await asyncio.to_thread(store.get, task_id)
    if not may_have_ended(record) or record.instance is None or record.session_id is None:
        return record  # (the last two never hold when the first does; for the type checker)
    try:
        instance = await asyncio.to_thread(fleet.resolve, record.instance)
    except (NotFoundError, ConflictError):
        return record
    endpoint = fleet.endpoint(instance)
    if endpoint is None:
        return record
    runner = TaskRunner(
        client=fleet.client(endpoint),
        record=record,
        persist=settling(store.asave),
        observer=Observer(),
    )
    state = TurnState(session_id=record.session_id)
    started_ms = (record.started_at or time.time()) * 1000.0 - 1000.0
    try:
        if await runner.looks_finished(state, started_ms):
            return await runner.finish(state, None, started_ms)
    except SessionNotFound as exc:
        return await ended_by(store, record, exc)
    except ServerError:
        pass
    return record


async def list_tasks(
    fleet: Fleet,
    store: TaskStore,
    *,
    batch_id: str | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> list[TaskRecord]:
    """Stored task records, oldest first (the newest `limit`). A standalone task still marked
    running is checked against its server first (`refresh_task`: its `ocm run` may have died
    with its terminal), eight at a time, so the list agrees with `ocm result`."""
    records = await asyncio.to_thread(
        store.list_tasks, batch_id=batch_id, status=status, limit=limit
    )
    await _left_in_queue(fleet, store, records)
    stale = [i for i, r in enumerate(records) if listed_stale(r)]
    if not stale:
        return records
    gate = asyncio.Semaphore(8)

    async def refreshed(index: int) -> None:
        async with gate:
            records[index] = await refresh_task(fleet, store, records[index].id)

    await asyncio.gather(*(refreshed(i) for i in stale))
    if status is not None:
        records = [r for r in records if r.status.value == status]
    return records


async def _left_in_queue(fleet: Fleet, store: TaskStore, records: list[TaskRecord]) -> None:
    """A standalone task still `queued` whose process neither waits nor holds a slot any
    more (a killed `ocm run`) was never sent: it ends cancelled, saying so."""
    queued = [r for r in records if left_queued(r)]
    if not queued:
        return
    owners = await asyncio.to_thread(slot_owners, fleet.registry)
    for record in queued:
        if record.id in owners:
            continue
        record.status = TaskStatus.CANCELLED
        record.queue = None
        record.finished_at = time.time()
        record.error = {"name": "Interrupted", "message": "its process ended while it waited "
                        "for a provider slot; nothing was sent"}  # fmt: skip
        await store.asave(record)


async def wait_task(
    fleet: Fleet,
    store: TaskStore,
    task_id: str,
    *,
    timeout: float | None = None,
    observer: Observer | None = None,
    cancel: asyncio.Event | None = None,
) -> TaskRecord:
    """Follow a started task to its end (it is never sent again), then record its result."""
    record = await asyncio.to_thread(store.get, task_id)
    if record.status.final:
        return record
    if timeout is not None and timeout <= 0:
        raise UsageError(f"invalid --timeout {timeout:g}: must be above 0")
    if record.instance is None or record.session_id is None:
        raise ConflictError(f"task {task_id} was never sent; nothing to wait for")
    instance = await asyncio.to_thread(fleet.resolve, record.instance)
    endpoint = fleet.endpoint_of(instance)
    if timeout is not None:
        elapsed = time.time() - (record.started_at or time.time())
        record.timeout = elapsed + timeout
    runner = TaskRunner(
        client=fleet.client(endpoint),
        record=record,
        persist=settling(store.asave),
        observer=observer or Observer(),
        cancel=cancel,
        custody=custody.of_instance(fleet, instance),
        control=control_for(fleet, store),  # its continuations after provider trouble
    )
    record.attempts -= 1  # following is not a new attempt
    try:
        return await runner.run()
    except (ServerError, SessionNotFound) as exc:
        return await ended_by(store, record, exc)
