"""Dispatching single tasks: pick an instance, run or start a task, wait for it, read results."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from .. import process
from ..client import AsyncOpencodeClient, Endpoint, http_options
from ..errors import ConflictError, NotFoundError, ServerError, UsageError
from ..models import InstanceRecord, State, TaskRecord, TaskStatus
from . import placement
from .runner import Observer, TaskRunner
from .store import TaskStore, new_id


class Fleet(Protocol):
    """What dispatching needs from the manager."""

    def resolve(self, ref: str) -> InstanceRecord: ...
    def endpoint(self, record: InstanceRecord) -> Endpoint | None: ...
    def records(self) -> list[InstanceRecord]: ...


@dataclass
class TaskOptions:
    instance: str | None = None
    session_id: str | None = None
    model: str | None = None
    agent: str | None = None
    directory: str | None = None
    timeout: float | None = None
    auto_approve: bool = False


def validate(prompt: str, options: TaskOptions) -> None:
    if not prompt.strip():
        raise UsageError("empty prompt: say what the agent should do")
    if options.timeout is not None and options.timeout <= 0:
        raise UsageError(f"invalid --timeout {options.timeout:g}: must be above 0")
    if options.model is not None and "/" not in options.model:
        raise UsageError(f"invalid --model {options.model!r}: expected PROVIDER/MODEL")
    if options.session_id is not None and not options.session_id.startswith("ses"):
        raise UsageError(f"invalid --session {options.session_id!r}: session ids start with ses_")


def running(fleet: Fleet) -> list[InstanceRecord]:
    return [
        r
        for r in fleet.records()
        if r.state is State.RUNNING and r.url and process.is_alive(r.server)
    ]


async def busy_counts(
    fleet: Fleet, records: Sequence[InstanceRecord], http: httpx.AsyncClient
) -> dict[str, int]:
    """Busy sessions per instance (in its project directory); unreachable ones are left out."""

    async def one(record: InstanceRecord) -> tuple[str, int | None]:
        endpoint = fleet.endpoint(record)
        if endpoint is None:
            return record.name, None
        try:
            status = await AsyncOpencodeClient(endpoint, http=http).session_status(record.spec.dir)
        except ServerError:
            return record.name, None
        return record.name, len(status)

    pairs = await asyncio.gather(*(one(r) for r in records))
    return {name: count for name, count in pairs if count is not None}


async def choose_instance(fleet: Fleet, ref: str | None, http: httpx.AsyncClient) -> InstanceRecord:
    """The named instance, or the least busy running one."""
    if ref is not None:
        record = fleet.resolve(ref)
        if record.state is not State.RUNNING or not process.is_alive(record.server):
            raise ConflictError(
                f"{record.name} is not running; `ocm start` or `ocm restart` it",
                instance=record.name,
            )
        return record
    candidates = running(fleet)
    if not candidates:
        raise NotFoundError("no running instance to send the task to; start one with `ocm start`")
    busy = await busy_counts(fleet, candidates, http)
    name = placement.least_busy(
        [placement.Slot(r.name, busy.get(r.name, 1 << 20)) for r in candidates]
    )
    return next(r for r in candidates if r.name == name)


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
    )


async def run_task(
    fleet: Fleet,
    store: TaskStore,
    prompt: str,
    options: TaskOptions,
    *,
    observer: Observer | None = None,
    cancel: asyncio.Event | None = None,
    detach: bool = False,
) -> TaskRecord:
    """Run a task to its end (or, with detach, only until the prompt is sent)."""
    validate(prompt, options)
    async with httpx.AsyncClient(**http_options()) as http:
        instance = await choose_instance(fleet, options.instance, http)
        record = store.add(new_record(prompt, options, instance))
        endpoint = fleet.endpoint(instance)
        assert endpoint is not None
        client = AsyncOpencodeClient(endpoint, http=http)
        if options.session_id is not None:
            await _check_session(client, options.session_id, instance.name)
        runner = TaskRunner(
            client=client,
            record=record,
            persist=store.save,
            observer=observer or Observer(),
            auto_approve=options.auto_approve,
            cancel=cancel,
        )
        try:
            if detach:  # send it and return; `ocm wait` follows it later
                await runner.begin()
                await runner.send()
                return record
            return await runner.run()
        except ServerError as exc:
            return _infrastructure_failure(store, record, exc)


async def _check_session(client: AsyncOpencodeClient, session_id: str, name: str) -> None:
    try:
        await client.session(session_id)
    except ServerError as exc:
        if exc.status_code in (404, 500):
            raise NotFoundError(f"no session {session_id} on {name}") from None
        raise


def _infrastructure_failure(store: TaskStore, record: TaskRecord, exc: ServerError) -> TaskRecord:
    record.status = TaskStatus.FAILED
    record.error = {
        "name": "InstanceUnreachable" if exc.status_code is None else "ServerError",
        "message": str(exc),
        "status_code": exc.status_code,
    }
    record.finished_at = time.time()
    store.save(record)
    return record


async def refresh_task(fleet: Fleet, store: TaskStore, task_id: str) -> TaskRecord:
    """The stored record; a running one is completed from the server if it has ended there."""
    from .tracker import TurnState

    record = store.get(task_id)
    if record.status.final or not record.prompted or not record.session_id or not record.instance:
        return record
    try:
        endpoint = fleet.endpoint(fleet.resolve(record.instance))
    except (NotFoundError, ConflictError):
        return record
    if endpoint is None:
        return record
    async with httpx.AsyncClient(**http_options()) as http:
        runner = TaskRunner(
            client=AsyncOpencodeClient(endpoint, http=http),
            record=record,
            persist=store.save,
            observer=Observer(),
        )
        state = TurnState(session_id=record.session_id)
        started_ms = (record.started_at or time.time()) * 1000.0 - 1000.0
        try:
            if await runner.looks_finished(state, started_ms):
                return await runner.finish(state, None, started_ms)
        except ServerError:
            pass
    return record


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
    record = store.get(task_id)
    if record.status.final:
        return record
    if timeout is not None and timeout <= 0:
        raise UsageError(f"invalid --timeout {timeout:g}: must be above 0")
    if record.instance is None or record.session_id is None:
        raise ConflictError(f"task {task_id} was never sent; nothing to wait for")
    instance = fleet.resolve(record.instance)
    endpoint = fleet.endpoint(instance)
    if endpoint is None:
        raise ConflictError(f"{instance.name} has no URL (status {instance.state.value})")
    if timeout is not None:
        elapsed = time.time() - (record.started_at or time.time())
        record.timeout = elapsed + timeout
    async with httpx.AsyncClient(**http_options()) as http:
        client = AsyncOpencodeClient(endpoint, http=http)
        runner = TaskRunner(
            client=client,
            record=record,
            persist=store.save,
            observer=observer or Observer(),
            cancel=cancel,
        )
        record.attempts -= 1  # following is not a new attempt
        try:
            return await runner.run()
        except ServerError as exc:
            return _infrastructure_failure(store, record, exc)
