"""`ocm mcp`: the fleet as MCP tools, on the official MCP Python SDK (`MCPServer`).

A front like the CLI: every tool drives the async facade (`AsyncManager`) and imports only
the public API. Tool names are snake_case `noun_verb`. Read tools are always there;
`read_only=True` keeps only them, `destructive=False` drops stop, restart and abort, and the
destructive tools that remain also want `confirm: true` in their arguments (elicitation is
not relied on: several clients silently decline it). Every tool is a `StrictTool`: it refuses
an argument it does not take, and an error a model could fix comes back as one readable line
that names the tool to call next; nothing but the protocol goes to stdout, and nothing to
stderr at the default log level. Every tool's result is a TypedDict from `results`, so it has
a typed `outputSchema`, filled with the compact records `records` makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations
from pydantic import Field

from .. import (
    AskPolicy,
    AsyncManager,
    BatchOptions,
    NotFoundError,
    OcmError,
    Settings,
    TaskOptions,
    TaskRecord,
    __version__,
    decode_batch_file,
)
from . import records, results
from .advice import for_agent
from .strict import StrictTool

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

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


#: The loggers `ocm mcp --log-level` governs: the SDK's, and the HTTP clients' (httpx logs
#: every request at INFO, a line per call to an instance). At the default, warning, one stdio
#: session writes nothing to stderr.
LOGGERS = ("mcp", "httpx", "httpx2", "httpcore", "sse_starlette")
LOG_LEVELS = ("debug", "info", "warning", "error")


def set_log_level(level: str) -> None:
    """Set the SDK's and the HTTP clients' loggers to `level` (one of LOG_LEVELS)."""
    for name in LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


def build_server(
    settings: Settings | None = None,
    *,
    read_only: bool = False,
    destructive: bool = True,
    log_level: str = "warning",
) -> MCPServer:
    """The MCP server for one OCM_HOME (settings), with the gates applied."""
    tools: list[Tool] = []

    def tool(title: str, annotations: ToolAnnotations) -> Callable[[F], F]:
        def register(fn: F) -> F:
            tools.append(StrictTool.of(fn, title=title, annotations=annotations))
            return fn

        return register

    async def call(work: Callable[[AsyncManager], Awaitable[T]]) -> T:
        try:
            async with AsyncManager(settings) as manager:
                return await work(manager)
        except OcmError as exc:
            raise ToolError(str(exc)) from None  # StrictTool says it for an agent

    runs: list[asyncio.Task[None]] = []  # batches running in this process

    def require_confirm(value: bool) -> None:
        if not value:  # StrictTool puts the tool's name first
            raise ToolError("this stops work in progress: call it again with confirm: true")

    def finish() -> MCPServer:
        set_log_level(log_level)
        server = MCPServer(
            "ocm",
            title="opencode-manager",
            version=__version__,
            instructions="Run and operate fleets of OpenCode servers: list and start instances, "
            "send them tasks and read the results. IDs you need are in every tool result.",
            tools=tools,
            log_level=cast("Any", log_level.upper()),
        )
        _add_resources(server, settings)
        return server

    # -- read ---------------------------------------------------------------------------------
    @tool("Fleet status", READ)
    async def fleet_status() -> results.FleetFrame:
        """Every managed instance with status, CPU, memory and busy/idle sessions, plus totals."""
        return records.fleet_frame(await call(lambda m: m.top()))

    @tool("List instances", READ)
    async def instances_list(include_foreign: bool = False) -> results.InstanceList:
        """Instances ocm manages (and, if asked, OpenCode servers others started)."""
        infos = await call(lambda m: m.instances(include_foreign=include_foreign))
        return {"instances": [records.instance(i) for i in infos]}

    @tool("Get an instance", READ)
    async def instance_get(name: Name) -> results.InstanceDetail:
        """One instance in detail: settings, processes, memory, sessions, MCP, errors."""
        return records.instance_detail(await call(lambda m: m.status(name)))

    @tool("Instance log", READ)
    async def instance_logs(
        name: Name,
        lines: Annotated[int, Field(ge=1, le=1000)] = 100,
        level: Annotated[str | None, Field(description="Only this level and above")] = None,
        grep: Annotated[str | None, Field(max_length=200, description="A regex")] = None,
    ) -> results.LogLines:
        """The last lines of an instance's log (across rotations), filtered."""
        found = await call(lambda m: m.logs([name], lines=lines, pattern=grep, level=level))
        return {"lines": [line.line for line in found]}

    @tool("Lifecycle events", READ)
    async def events_list(
        name: Annotated[str | None, Field(description="Instance (default: all)")] = None,
        after: Annotated[int | None, Field(ge=0, description="Cursor: the last id seen")] = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 100,
    ) -> results.EventList:
        """Started, healthy, crashed, restarted, stopped... newest last; pass `cursor` back as
        `after` to get only newer ones."""
        found = await call(lambda m: m.events(name, limit=limit, after=after))
        cursor = max((e.id for e in found if e.id is not None), default=after)
        return {"events": [records.event(e) for e in found], "cursor": cursor}

    @tool("List sessions", READ)
    async def sessions_list(
        name: Annotated[str | None, Field(description="Instance (default: every running)")] = None,
        raw: Annotated[
            bool, Field(description="Add each session as OpenCode sends it (`raw`)")
        ] = False,
    ) -> results.SessionList:
        """Sessions on running instances, with their status (idle, busy, retry)."""
        rows = await call(lambda m: m.sessions(name))
        return {"sessions": [records.session(r, raw=raw) for r in rows]}

    @tool("Get a session", READ)
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
                "session": records.session(row),
                "messages": [msg.raw for msg in page],
                "total_messages": len(messages),
                "next_offset": offset + len(page) if offset + len(page) < len(messages) else None,
                "todos": todos,
                "diff": diff,
                "asks": [records.ask(a) for a in asks],
            }

        return await call(read)

    @tool("Get a task", READ)
    async def task_get(task_id: Id) -> results.TaskRecord:
        """A task's result record: status, answer text, tool calls, todos, diff, tokens."""
        return records.task(await call(lambda m: m.task(task_id)))

    @tool("List tasks", READ)
    async def tasks_list(
        status: Annotated[str | None, Field(description="completed, failed, running...")] = None,
        batch_id: str | None = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
    ) -> results.TaskList:
        """Stored task results, newest last (prompt, status, instance, answer)."""
        found = await call(lambda m: m.tasks(batch_id=batch_id, status=status, limit=limit))
        return {"tasks": [records.task_brief(r) for r in found]}

    @tool("Get a batch", READ)
    async def batch_get(batch_id: Id) -> results.BatchSummary:
        """A batch with its counts and every task's outcome."""
        return records.batch(await call(lambda m: m.batch_show(batch_id)))

    @tool("List batches", READ)
    async def batches_list() -> results.BatchList:
        """Every batch: id, status, counts."""
        found = await call(lambda m: m.batches())
        return {"batches": [records.batch_brief(b) for b in found]}

    @tool("Metrics", READ)
    async def metrics_get() -> results.Metrics:
        """The fleet's figures (instances, restarts, RSS, CPU, sessions, tasks, tokens, cost)."""
        frame = records.fleet_frame(await call(lambda m: m.top()))
        totals = cast("results.TaskTotals", await call(lambda m: m.task_totals()))
        return {**frame, "tasks": totals}

    @tool("Wait for a task", READ)
    async def task_wait(
        task_id: Id,
        ctx: Context,
        wait_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S)] = 45.0,
    ) -> results.TaskHandle:
        """Wait up to `wait_s` seconds for a task to end (with progress notifications); its
        record either way. Returns early when the task waits on an ask left for you."""
        return await _wait(call, task_id, wait_s, ctx)

    if read_only:
        return finish()

    # -- lifecycle and tasks --------------------------------------------------------------------
    @tool("Start instances", CREATE)
    async def instances_start(
        count: Annotated[int, Field(ge=1, le=16)] = 1,
        name: Annotated[str | None, Field(max_length=63)] = None,
        directory: Annotated[str | None, Field(description="Project directory")] = None,
    ) -> results.InstanceList:
        """Start supervised OpenCode servers; returns once each answers its health check."""
        infos = await call(lambda m: m.start(name, count=count, directory=directory))
        return {"instances": [records.instance(i) for i in infos]}

    @tool("Run a task", CREATE)
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
        model: Annotated[str | None, Field(description="provider/model")] = None,
        max_cost: Annotated[
            float | None,
            Field(
                gt=0,
                description="Budget in USD: past it the task is "
                "interrupted and ends budget_exceeded",
            ),
        ] = None,
        max_tokens: Annotated[int | None, Field(ge=1, description="Token budget")] = None,
        recover: Annotated[
            int | None,
            Field(
                ge=0, le=100, description="Continuations after transient provider errors (429, 5xx)"
            ),
        ] = None,
        fallback: Annotated[
            list[str] | None,
            Field(
                description="Models to go on with when the provider "
                "refuses or keeps failing, in order"
            ),
        ] = None,
        key: Annotated[
            str | None,
            Field(
                max_length=200,
                description="Idempotent submission: the same "
                "key returns the task it made instead of running it again",
            ),
        ] = None,
        ctx: Context | None = None,
    ) -> results.TaskHandle:
        """Send a prompt to an instance's agent. Waits up to `wait_s` seconds: the result if
        it ended by then, else the task id to pass to `task_wait` or `task_get`."""
        options = TaskOptions(
            instance=instance,
            directory=directory,
            auto_approve=asks == "approve",
            leave_asks=asks == "leave",
            model=model,
            max_cost=max_cost,
            max_tokens=max_tokens,
            recover=recover,
            fallbacks=list(fallback or []),
            key=key,
        )
        started = await call(lambda m: m.run(prompt, options, detach=True))
        return await _wait(call, started.id, wait_s, ctx)

    @tool("Run a batch", CREATE)
    async def batch_run(
        tasks: Annotated[
            list[dict[str, Any]] | None,
            Field(
                description="Tasks: {prompt, id?, instance?, dir?, model?, agent?, timeout?, "
                "fallback?, priority?, max_cost?, max_tokens?}"
            ),
        ] = None,
        file: Annotated[str | None, Field(description="Or a batch file (JSONL, YAML)")] = None,
        per_instance: Annotated[int, Field(ge=1, le=16)] = 2,
        max_cost: Annotated[float | None, Field(gt=0, description="Budget per task, USD")] = None,
        batch_max_cost: Annotated[
            float | None,
            Field(
                gt=0, description="Budget of the whole batch, USD: once spent, no new task starts"
            ),
        ] = None,
        recover: Annotated[
            int | None,
            Field(
                ge=0, le=100, description="Continuations per task after transient provider errors"
            ),
        ] = None,
        key: Annotated[
            str | None, Field(max_length=200, description="Idempotent submission key")
        ] = None,
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
        options = BatchOptions(
            per_instance=per_instance, max_cost=max_cost, batch_max_cost=batch_max_cost,
            recover=recover, key=key,
        )  # fmt: skip
        created = await call(lambda m: m.batch_create(text, options, source=source))
        if key is not None and created.counts != {"pending": created.total}:
            # The key's earlier batch, as it stands: never run twice.
            return {"batch_id": created.id, "total": created.total,
                    "status": created.status.value,
                    "next": f"batch_get with batch_id {created.id}"}  # fmt: skip
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

    @tool("Answer a permission ask", ANSWER)
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
        return {"answered": records.ask(ask), "reply": reply}

    @tool("Answer a question ask", ANSWER)
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
        return {"answered": records.ask(ask), "answers": answers, "rejected": reject}

    if not destructive:
        return finish()

    @tool("Stop instances", DESTROY)
    async def instances_stop(names: list[Name], confirm: Confirm = False) -> results.StopList:
        """Stop instances ocm manages (never a server someone else started)."""
        require_confirm(confirm)
        stopped = await call(lambda m: m.stop(names))
        return {"stopped": [records.stop(s) for s in stopped]}

    @tool("Restart an instance", DESTROY)
    async def instance_restart(name: Name, confirm: Confirm = False) -> results.InstanceList:
        """Restart an instance with the same name, settings, password and data."""
        require_confirm(confirm)
        infos = await call(lambda m: m.restart([name]))
        return {"instances": [records.instance(i) for i in infos]}

    @tool("Cancel a batch", DESTROY)
    async def batch_cancel(batch_id: Id, confirm: Confirm = False) -> results.BatchSummary:
        """Cancel a batch: running tasks are aborted, the rest cancelled."""
        require_confirm(confirm)
        return records.batch(await call(lambda m: m.batch_cancel(batch_id)))

    @tool("Abort a task", DESTROY)
    async def task_abort(task_id: Id, confirm: Confirm = False) -> results.TaskRecord:
        """Abort a running task's session on its server."""
        require_confirm(confirm)
        record = await call(lambda m: m.task(task_id))
        if record.session_id is None:
            raise ToolError(f"task {task_id} has no session to abort")
        await call(lambda m: m.abort_session(record.session_id or "", record.instance))
        return records.task(await call(lambda m: m.task(task_id)))

    return finish()


def _add_resources(server: MCPServer, settings: Settings | None) -> None:
    """The read tools' answers, addressable (the same compact records)."""

    async def read(work: Callable[[AsyncManager], Awaitable[Any]]) -> str:
        """A resource's JSON; a missing one is the SDK's not-found, with our message."""
        try:
            async with AsyncManager(settings) as manager:
                found = await work(manager)
        except NotFoundError as exc:
            raise ResourceNotFoundError(for_agent(str(exc))) from None
        except OcmError as exc:
            raise ResourceError(for_agent(str(exc))) from None
        return json.dumps(found, default=str, separators=(",", ":"), ensure_ascii=False)

    @server.resource("ocm://fleet", title="The fleet", mime_type="application/json")
    async def fleet_resource() -> str:
        """Every managed instance with its figures, and the totals (as `fleet_status`)."""
        return await read(lambda m: _shaped(m.top(), records.fleet_frame))

    @server.resource("ocm://instances/{name}", title="An instance", mime_type="application/json")
    async def instance_resource(name: str) -> str:
        """One instance in detail (as `instance_get`)."""
        return await read(lambda m: _shaped(m.status(name), records.instance_detail))

    @server.resource("ocm://tasks/{task_id}", title="A task", mime_type="application/json")
    async def task_resource(task_id: str) -> str:
        """A task's result record (as `task_get`)."""
        return await read(lambda m: _shaped(m.task(task_id), records.task))

    @server.resource("ocm://batches/{batch_id}", title="A batch", mime_type="application/json")
    async def batch_resource(batch_id: str) -> str:
        """A batch with every task's outcome (as `batch_get`)."""
        return await read(lambda m: _shaped(m.batch_show(batch_id), records.batch))


async def _shaped(found: Awaitable[T], shape: Callable[[T], Any]) -> Any:
    return shape(await found)


async def _run_batch(settings: Settings | None, batch_id: str) -> None:
    """A batch started by `batch_run`, to its end (its state is in the registry)."""
    with contextlib.suppress(OcmError):
        async with AsyncManager(settings) as manager:
            await manager.batch_run(batch_id)


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
                return {
                    "done": True,
                    "task_id": task_id,
                    "record": records.task(record, with_id=False),
                }
            record = await call(lambda m: m.task(task_id))
            asks = await _asks_for_caller(call, record)
            if asks or time.monotonic() - started >= wait_s:
                out: results.TaskHandle = {
                    "done": False, "task_id": task_id,
                    "record": records.task(record, with_id=False),
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
    return [records.ask(ask) for ask in found]
