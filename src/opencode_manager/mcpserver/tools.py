"""`ocm mcp`: the fleet as MCP tools, on the official MCP Python SDK (`MCPServer`).

A front like the CLI: every tool drives the async facade (`AsyncManager`) and imports only
the public API. Tool names are snake_case `noun_verb`. Read tools are always there;
`read_only=True` keeps only them, `destructive=False` drops stop, restart and abort, and the
destructive tools that remain also want `confirm: true` in their arguments (elicitation is
not relied on: several clients silently decline it). An error a model could fix comes back
as a readable tool error; nothing but the protocol goes to stdout. Every tool's result is a
TypedDict from `results`, so it has a typed `outputSchema`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from .. import (
    AskPolicy,
    AsyncManager,
    BatchOptions,
    BatchSummary,
    FleetFrame,
    InstanceInfo,
    LifecycleEvent,
    NotFoundError,
    OcmError,
    PendingAsk,
    SessionRow,
    Settings,
    StatusReport,
    StopResult,
    TaskOptions,
    TaskRecord,
    __version__,
    decode_batch_file,
)
from . import results

T = TypeVar("T")

#: How long `task_run` and `task_wait` wait before returning a handle: MCP clients cut calls
#: off somewhere between 30 s and a few minutes.
MAX_WAIT_S = 50.0
PROGRESS_EVERY = 1.0  # seconds between progress notifications while a tool waits

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                       open_world_hint=False)  # fmt: skip
CREATE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                         open_world_hint=False)  # fmt: skip
ANSWER = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                         open_world_hint=False)  # fmt: skip
DESTROY = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                          open_world_hint=False)  # fmt: skip

Name = Annotated[str, Field(min_length=1, max_length=200, description="Instance name, port or URL")]
Id = Annotated[str, Field(min_length=1, max_length=64)]
Confirm = Annotated[bool, Field(description="Must be true: this tool stops or ends work.")]


def build_server(
    settings: Settings | None = None, *, read_only: bool = False, destructive: bool = True
) -> MCPServer:
    """The MCP server for one OCM_HOME (settings), with the gates applied."""
    server = MCPServer(
        "ocm",
        title="opencode-manager",
        version=__version__,
        instructions="Run and operate fleets of OpenCode servers: list and start instances, "
        "send them tasks and read the results. IDs you need are in every tool result.",
    )

    async def call(work: Callable[[AsyncManager], Awaitable[T]]) -> T:
        try:
            async with AsyncManager(settings) as manager:
                return await work(manager)
        except OcmError as exc:
            raise ToolError(f"{exc} (exit code {exc.exit_code} in the CLI)") from None

    async def read(work: Callable[[AsyncManager], Awaitable[Any]]) -> str:
        """A resource's JSON; a missing one is the SDK's not-found, with our message."""
        try:
            async with AsyncManager(settings) as manager:
                found = await work(manager)
        except NotFoundError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except OcmError as exc:
            raise ResourceError(str(exc)) from None
        data = found if isinstance(found, dict) else found.to_dict()
        return json.dumps(data, default=str)

    runs: list[asyncio.Task[None]] = []  # batches running in this process

    def require_confirm(value: bool, what: str) -> None:
        if not value:
            raise ToolError(f"{what} stops work in progress: call it again with confirm: true")

    # -- read ---------------------------------------------------------------------------------
    @server.tool(title="Fleet status", annotations=READ)
    async def fleet_status() -> results.FleetFrame:
        """Every managed instance with status, CPU, memory and busy/idle sessions, plus totals."""
        return _fleet_frame(await call(lambda m: m.top()))

    @server.tool(title="List instances", annotations=READ)
    async def instances_list(include_foreign: bool = False) -> results.InstanceList:
        """Instances ocm manages (and, if asked, OpenCode servers others started)."""
        infos = await call(lambda m: m.instances(include_foreign=include_foreign))
        return {"instances": [_instance(i) for i in infos]}

    @server.tool(title="Get an instance", annotations=READ)
    async def instance_get(name: Name) -> results.InstanceDetail:
        """One instance in detail: settings, processes, memory, sessions, MCP, errors."""
        return _instance_detail(await call(lambda m: m.status(name)))

    @server.tool(title="Instance log", annotations=READ)
    async def instance_logs(
        name: Name,
        lines: Annotated[int, Field(ge=1, le=1000)] = 100,
        level: Annotated[str | None, Field(description="Only this level and above")] = None,
        grep: Annotated[str | None, Field(max_length=200, description="A regex")] = None,
    ) -> results.LogLines:
        """The last lines of an instance's log (across rotations), filtered."""
        found = await call(lambda m: m.logs([name], lines=lines, pattern=grep, level=level))
        return {"lines": [line.line for line in found]}

    @server.tool(title="Lifecycle events", annotations=READ)
    async def events_list(
        name: Annotated[str | None, Field(description="Instance (default: all)")] = None,
        after: Annotated[int | None, Field(ge=0, description="Cursor: the last id seen")] = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 100,
    ) -> results.EventList:
        """Started, healthy, crashed, restarted, stopped... newest last; pass `cursor` back as
        `after` to get only newer ones."""
        found = await call(lambda m: m.events(name, limit=limit, after=after))
        rows = [_event(e) | {"id": e.id} for e in found]
        cursor = max((e.id for e in found if e.id is not None), default=after)
        return {"events": rows, "cursor": cursor}

    @server.tool(title="List sessions", annotations=READ)
    async def sessions_list(
        name: Annotated[str | None, Field(description="Instance (default: every running)")] = None,
    ) -> results.SessionList:
        """Sessions on running instances, with their status (idle, busy, retry)."""
        rows = await call(lambda m: m.sessions(name))
        return {"sessions": [_session(r) for r in rows]}

    @server.tool(title="Get a session", annotations=READ)
    async def session_get(
        session_id: Id,
        instance: Annotated[str | None, Field(description="Default: ask every one")] = None,
        offset: Annotated[int, Field(ge=0)] = 0,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> results.SessionDetail:
        """A session: its status, messages (paginated: `offset`, `limit`, oldest first),
        todos, diff and the permissions or questions it waits on (`asks`)."""

        async def read(m: AsyncManager) -> results.SessionDetail:
            row = await m.session(session_id, instance)
            messages = await m.session_messages(session_id, row.instance)
            todos, diff, asks = await asyncio.gather(
                m.session_todo(session_id, row.instance),
                m.session_diff(session_id, row.instance),
                m.session_asks(session_id, row.instance),
            )
            page = messages[offset : offset + limit]
            return {
                "session": _session(row) | {"raw": None},
                "messages": [msg.raw for msg in page],
                "total_messages": len(messages),
                "next_offset": offset + len(page) if offset + len(page) < len(messages) else None,
                "todos": todos,
                "diff": diff,
                "asks": [_ask(a) for a in asks],
            }

        return await call(read)

    @server.tool(title="Get a task", annotations=READ)
    async def task_get(task_id: Id) -> results.TaskRecord:
        """A task's result record: status, answer text, tool calls, todos, diff, tokens."""
        return _record(await call(lambda m: m.task(task_id)))

    @server.tool(title="List tasks", annotations=READ)
    async def tasks_list(
        status: Annotated[str | None, Field(description="completed, failed, running...")] = None,
        batch_id: str | None = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
    ) -> results.TaskList:
        """Stored task results, newest last (prompt, status, instance, answer)."""
        records = await call(lambda m: m.tasks(batch_id=batch_id, status=status, limit=limit))
        return {"tasks": [_brief(r) for r in records]}

    @server.tool(title="Get a batch", annotations=READ)
    async def batch_get(batch_id: Id) -> results.BatchSummary:
        """A batch with its counts and every task's outcome."""
        return _batch(await call(lambda m: m.batch_show(batch_id)))

    @server.tool(title="List batches", annotations=READ)
    async def batches_list() -> results.BatchList:
        """Every batch: id, status, counts."""
        found = await call(lambda m: m.batches())
        return {"batches": [_batch_brief(b) for b in found]}

    @server.tool(title="Metrics", annotations=READ)
    async def metrics_get() -> results.Metrics:
        """The fleet's figures (instances, restarts, RSS, CPU, sessions, tasks, tokens, cost)."""
        frame = _fleet_frame(await call(lambda m: m.top()))
        totals = cast("results.TaskTotals", await call(lambda m: m.task_totals()))
        return {**frame, "tasks": totals}

    # -- resources: the read tools' answers, addressable -------------------------------------
    @server.resource("ocm://fleet", title="The fleet", mime_type="application/json")
    async def fleet_resource() -> str:
        """Every managed instance with its figures, and the totals (as `fleet_status`)."""
        return await read(lambda m: m.top())

    @server.resource("ocm://instances/{name}", title="An instance", mime_type="application/json")
    async def instance_resource(name: str) -> str:
        """One instance in detail (as `instance_get`)."""
        return await read(lambda m: m.status(name))

    @server.resource("ocm://tasks/{task_id}", title="A task", mime_type="application/json")
    async def task_resource(task_id: str) -> str:
        """A task's result record (as `task_get`)."""
        return await read(lambda m: m.task(task_id))

    @server.resource("ocm://batches/{batch_id}", title="A batch", mime_type="application/json")
    async def batch_resource(batch_id: str) -> str:
        """A batch with every task's outcome (as `batch_get`)."""
        return await read(lambda m: m.batch_show(batch_id))

    @server.tool(title="Wait for a task", annotations=READ)
    async def task_wait(
        task_id: Id,
        ctx: Context,
        wait_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S)] = 45.0,
    ) -> results.TaskHandle:
        """Wait up to `wait_s` seconds for a task to end (with progress notifications); its
        record either way. Returns early when the task waits on an ask left for you."""
        return await _wait(call, task_id, wait_s, ctx)

    if read_only:
        return server

    # -- lifecycle and tasks --------------------------------------------------------------------
    @server.tool(title="Start instances", annotations=CREATE)
    async def instances_start(
        count: Annotated[int, Field(ge=1, le=16)] = 1,
        name: Annotated[str | None, Field(max_length=63)] = None,
        directory: Annotated[str | None, Field(description="Project directory")] = None,
    ) -> results.InstanceList:
        """Start supervised OpenCode servers; returns once each answers its health check."""
        infos = await call(lambda m: m.start(name, count=count, directory=directory))
        return {"instances": [_instance(i) for i in infos]}

    @server.tool(title="Run a task", annotations=CREATE)
    async def task_run(
        prompt: Annotated[str, Field(min_length=1, max_length=100_000)],
        instance: Annotated[str | None, Field(description="Default: the least busy")] = None,
        directory: str | None = None,
        wait_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S)] = 45.0,
        asks: Annotated[
            Literal["reject", "approve", "leave"],
            Field(
                description="The agent's permission and question asks: reject them, "
                "approve them, or leave them for you (session_permission_reply, "
                "session_question_answer)"
            ),
        ] = "reject",
        ctx: Context | None = None,
    ) -> results.TaskHandle:
        """Send a prompt to an instance's agent. Waits up to `wait_s` seconds: the result if
        it ended by then, else the task id to pass to `task_wait` or `task_get`."""
        options = TaskOptions(
            instance=instance,
            directory=directory,
            auto_approve=asks == "approve",
            leave_asks=asks == "leave",
        )
        started = await call(lambda m: m.run(prompt, options, detach=True))
        return await _wait(call, started.id, wait_s, ctx)

    @server.tool(title="Run a batch", annotations=CREATE)
    async def batch_run(
        tasks: Annotated[
            list[dict[str, Any]] | None,
            Field(description="Tasks: {prompt, id?, instance?, dir?, model?, agent?, timeout?}"),
        ] = None,
        file: Annotated[str | None, Field(description="Or a batch file (JSONL, YAML)")] = None,
        per_instance: Annotated[int, Field(ge=1, le=16)] = 2,
    ) -> results.BatchStarted:
        """Fan tasks out over the running instances. Returns the batch id at once; the batch
        runs in this server process (follow it with `batch_get`; `ocm batch resume` finishes
        it if this process ends first)."""
        if (tasks is None) == (file is None):
            raise ToolError("give `tasks` (a list) or `file` (a path), one of the two")
        if file is not None:
            try:
                text = decode_batch_file(Path(file).read_bytes(), source=file)
            except OSError as exc:
                raise ToolError(f"cannot read {file}: {exc.strerror or exc}") from None
            source = file
        else:
            text = "".join(json.dumps(task) + "\n" for task in tasks or [])
            source = "mcp"
        options = BatchOptions(per_instance=per_instance)
        created = await call(lambda m: m.batch_create(text, options, source=source))
        runs.append(asyncio.create_task(_run_batch(settings, created.id)))
        # Return once the run has claimed the batch, so `batch_get` says "running" at once
        # (never "interrupted", as a batch nobody runs would).
        for _ in range(100):
            shown = await call(lambda m: m.batch_show(created.id))
            if shown.status.value != "interrupted":
                break
            await asyncio.sleep(0.05)  # polling the claim with a deadline (5 s)
        return {"batch_id": created.id, "total": created.total, "status": "running",
                "next": f"batch_get with batch_id {created.id}"}  # fmt: skip

    @server.tool(title="Answer a permission ask", annotations=ANSWER)
    async def session_permission_reply(
        session_id: Id,
        permission_id: Annotated[str, Field(min_length=1, max_length=64, pattern="^per")],
        reply: Literal["once", "always", "reject"],
        message: Annotated[
            str | None, Field(max_length=2000, description="With reject: what to do instead")
        ] = None,
    ) -> results.PermissionReply:
        """Answer a permission the agent waits on (ids in `session_get`'s or `task_wait`'s
        `asks`): allow it once, always, or reject it with a message for the agent."""
        ask = await call(lambda m: m.reply_permission(session_id, permission_id, reply,
                                                      message=message))  # fmt: skip
        return {"answered": _ask(ask), "reply": reply}

    @server.tool(title="Answer a question ask", annotations=ANSWER)
    async def session_question_answer(
        session_id: Id,
        question_id: Annotated[str, Field(min_length=1, max_length=64, pattern="^que")],
        answers: Annotated[
            list[list[str]] | None,
            Field(description="One list of chosen option labels (or free text) per question"),
        ] = None,
        reject: Annotated[bool, Field(description="Decline to answer instead")] = False,
    ) -> results.QuestionAnswer:
        """Answer a question the agent asked (ids and options in `session_get`'s or
        `task_wait`'s `asks`), or reject it."""
        if (answers is None) != reject:
            raise ToolError("give `answers` (one list per question) or `reject: true`")
        ask = await call(lambda m: m.answer_question(session_id, question_id, answers))
        return {"answered": _ask(ask), "answers": answers, "rejected": reject}

    if not destructive:
        return server

    @server.tool(title="Stop instances", annotations=DESTROY)
    async def instances_stop(names: list[Name], confirm: Confirm = False) -> results.StopList:
        """Stop instances ocm manages (never a server someone else started)."""
        require_confirm(confirm, "instances_stop")
        stopped = await call(lambda m: m.stop(names))
        return {"stopped": [_stop(s) for s in stopped]}

    @server.tool(title="Restart an instance", annotations=DESTROY)
    async def instance_restart(name: Name, confirm: Confirm = False) -> results.InstanceList:
        """Restart an instance with the same name, settings, password and data."""
        require_confirm(confirm, "instance_restart")
        infos = await call(lambda m: m.restart([name]))
        return {"instances": [_instance(i) for i in infos]}

    @server.tool(title="Cancel a batch", annotations=DESTROY)
    async def batch_cancel(batch_id: Id, confirm: Confirm = False) -> results.BatchSummary:
        """Cancel a batch: running tasks are aborted, the rest cancelled."""
        require_confirm(confirm, "batch_cancel")
        return _batch(await call(lambda m: m.batch_cancel(batch_id)))

    @server.tool(title="Abort a task", annotations=DESTROY)
    async def task_abort(task_id: Id, confirm: Confirm = False) -> results.TaskRecord:
        """Abort a running task's session on its server."""
        require_confirm(confirm, "task_abort")
        record = await call(lambda m: m.task(task_id))
        if record.session_id is None:
            raise ToolError(f"task {task_id} has no session to abort")
        await call(lambda m: m.abort_session(record.session_id or "", record.instance))
        return _record(await call(lambda m: m.task(task_id)))

    return server


async def _run_batch(settings: Settings | None, batch_id: str) -> None:
    """A batch started by `batch_run`, to its end (its state is in the registry)."""
    with contextlib.suppress(OcmError):
        async with AsyncManager(settings) as manager:
            await manager.batch_run(batch_id)


# -- the public types' `to_dict()` as their result shapes (test_results pins the keys) --------
def _instance(info: InstanceInfo) -> results.InstanceInfo:
    return cast("results.InstanceInfo", info.to_dict())


def _instance_detail(report: StatusReport) -> results.InstanceDetail:
    return cast("results.InstanceDetail", report.to_dict())


def _fleet_frame(frame: FleetFrame) -> results.FleetFrame:
    return cast("results.FleetFrame", frame.to_dict())


def _event(event: LifecycleEvent) -> results.LifecycleEvent:
    return cast("results.LifecycleEvent", event.to_dict())


def _session(row: SessionRow) -> results.SessionRow:
    return cast("results.SessionRow", row.to_dict())


def _ask(ask: PendingAsk) -> results.PendingAsk:
    return cast("results.PendingAsk", ask.to_dict())


def _record(record: TaskRecord) -> results.TaskRecord:
    return cast("results.TaskRecord", record.to_dict())


def _batch(summary: BatchSummary) -> results.BatchSummary:
    return cast("results.BatchSummary", summary.to_dict())


def _batch_brief(summary: BatchSummary) -> results.BatchBrief:
    return cast("results.BatchBrief", summary.to_dict(with_tasks=False))


def _stop(result: StopResult) -> results.StopResult:
    return cast("results.StopResult", result.to_dict())


def _brief(record: TaskRecord) -> results.TaskBrief:
    return {"id": record.id, "status": record.status.value, "instance": record.instance,
            "session_id": record.session_id, "prompt": record.prompt, "text": record.text,
            "error": record.error, "batch_id": record.batch_id, "created_at": record.created_at,
            "finished_at": record.finished_at, "duration_s": record.duration_s}  # fmt: skip


async def _wait(
    call: Callable[[Callable[[AsyncManager], Awaitable[Any]]], Awaitable[Any]],
    task_id: str,
    wait_s: float,
    ctx: Context | None = None,
) -> results.TaskHandle:
    """Follow a task for up to `wait_s` seconds, reporting progress about once a second. A
    task that waits on asks left for the caller (`asks: "leave"`) returns at once, with them."""
    started = time.monotonic()
    follower = asyncio.ensure_future(call(lambda m: m.wait(task_id)))
    try:
        while True:
            left = wait_s - (time.monotonic() - started)
            await asyncio.wait({follower}, timeout=max(0.0, min(PROGRESS_EVERY, left)))
            if follower.done():
                record = follower.result()
                return {"done": True, "task_id": task_id, "record": _record(record)}
            record = await call(lambda m: m.task(task_id))
            asks = await _asks_for_caller(call, record)
            if asks or time.monotonic() - started >= wait_s:
                out: results.TaskHandle = {
                    "done": False, "task_id": task_id, "record": _record(record),
                    "next": f"task_wait with task_id {task_id}",
                }  # fmt: skip
                if asks:
                    out["asks"] = asks
                    out["next"] = "answer with session_permission_reply or " \
                        "session_question_answer, then task_wait"  # fmt: skip
                return out
            if ctx is not None:
                elapsed = time.monotonic() - started
                await ctx.report_progress(
                    round(elapsed, 1), wait_s,
                    f"task {task_id} {record.status.value} on {record.instance} "
                    f"({elapsed:.0f} s of {wait_s:.0f} s)",
                )  # fmt: skip
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, OcmError, ToolError):
            await follower


async def _asks_for_caller(
    call: Callable[[Callable[[AsyncManager], Awaitable[Any]]], Awaitable[Any]],
    record: TaskRecord,
) -> list[results.PendingAsk]:
    """The asks a task with `asks: "leave"` waits on (read from its server), else none."""
    if record.on_ask != AskPolicy.LEAVE.value or not record.session_id:
        return []
    if not any(ask.get("answer") == "pending" for ask in record.asks):
        return []
    session_id = record.session_id
    try:
        found = await call(lambda m: m.session_asks(session_id, record.instance))
    except ToolError:
        return []
    return [_ask(ask) for ask in found]
