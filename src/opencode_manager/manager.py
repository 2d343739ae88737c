"""The facade: `AsyncManager`, async-native (its blocking twin `Manager` is in twin.py).

    import asyncio
    from opencode_manager import AsyncManager

    async def main() -> None:
        async with AsyncManager() as ocm:
            [info] = await ocm.start(count=1)
            record = await ocm.run("BASH: echo hi", TaskOptions(instance=info.name))
            await ocm.stop([info.name])

    asyncio.run(main())

Every method is one statement: a delegation to the module that owns its noun (commands about
instances by name through `routing`, which looks each name up once and sends a cluster
instance's to its host's agent). Policy lives down there, where its tests reach it without
the facade. Blocking work (process control, polling the registry while instances start or
stop) runs in worker threads, so the event loop of a long-lived front (dashboard, MCP server,
notebook) never stalls.

`Manager` has the same methods, blocking. It is generated from this class (scripts/twin.py),
so the two cannot drift. It runs the coroutines on a private event loop in a thread of its own
(anyio's blocking portal, via `portal.Portal`), so it works from any thread, including one
whose event loop is running (a Jupyter cell, a FastAPI handler), where `asyncio.run` would
refuse.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import process
from .instances import spec as specs
from .instances.fleet import Fleet
from .models import (
    DEFAULT_USERNAME,
    InstanceInfo,
    InstanceRecord,
    LifecycleEvent,
    ResourceSample,
    TaskRecord,
)
from .settings import PINNED_OPENCODE_VERSION, Settings
from .supervision import DEFAULT_START_TIMEOUT as DEFAULT_START_TIMEOUT
from .supervision import DEFAULT_STOP_TIMEOUT as DEFAULT_STOP_TIMEOUT

if TYPE_CHECKING:
    import httpx

    from .client.types import Message
    from .cluster.link import ClusterReport
    from .instances.binary import Binary
    from .instances.compose import UpReport
    from .instances.doctor import Check
    from .instances.dump import ResurrectReport, SaveReport
    from .instances.inventory import StatusReport
    from .instances.lifecycle import CleanupReport, StartProgress, StopResult
    from .instances.logs import LogLine
    from .instances.restore import Backup, RestoreReport
    from .instances.systemd import SystemdExport
    from .limits.policy import Limit
    from .limits.table import LimitStatus, QueuedTicket
    from .observe.fleetview import FleetFrame
    from .observe.monitor import Received
    from .tasks.batch import BatchOptions, Listener
    from .tasks.batchfile import BatchTask
    from .tasks.dispatch import TaskOptions
    from .tasks.runner import Checkpoint, Observer
    from .tasks.sessions import PendingAsk, SessionRow
    from .tasks.store import PruneReport, TaskStore
    from .tasks.summary import BatchSummary
    from .tasks.worktree import WorktreeRemoval, WorktreeRow


class AsyncManager:
    """Start, find, drive, watch and stop OpenCode servers (every method a coroutine or an
    async iterator)."""

    def __init__(
        self, settings: Settings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """`transport` carries every call to a server (default: the network); tests pass an
        `httpx.MockTransport`, e.g. over `opencode_manager.testing.opencode.FakeOpencode`."""
        self.settings = settings or Settings.load()
        self.fleet = Fleet(self.settings, transport=transport)

    async def aclose(self) -> None:
        """Close the one HTTP client (made on first use in this loop) and the registry."""
        await self.fleet.aclose()

    async def __aenter__(self) -> AsyncManager:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def store(self) -> TaskStore:
        """The task and batch records (`ocm result`, `ocm batch ls` read them)."""
        from .tasks.store import TaskStore

        return TaskStore(self.fleet.registry, secrets=self.fleet.secrets.values)

    # -- instances -------------------------------------------------------------------------
    async def start(
        self,
        name: str | None = None,
        *,
        count: int = 1,
        directory: str | None = None,
        port: int | None = None,
        port_range: tuple[int, int] | None = None,
        hostname: str = "127.0.0.1",
        cors: Sequence[str] = (),
        log_level: str | None = None,
        env: Sequence[str] = (),
        auth: bool = True,
        shared_data: bool = False,
        supervision: specs.Supervision | None = None,
        timeout: float = DEFAULT_START_TIMEOUT,
        progress: StartProgress | None = None,
        cancel: asyncio.Event | None = None,
        opencode: str | None = None,
    ) -> list[InstanceInfo]:
        """Start instances in parallel; return once all are healthy, or raise StartError.

        `opencode`: their binary, kept across restarts: a version `install` put in OCM_HOME
        (`"2.1.2"`) or a path (default: the settings' resolution order at each start).
        Setting `cancel` (or cancelling this coroutine) rolls back: the instances this call
        created are stopped and removed, and it raises Interrupted."""
        from . import routing

        return await routing.start(
            self.fleet,
            specs.build_specs(
                name=name, count=count, directory=directory, port=port, port_range=port_range,
                hostname=hostname, cors=cors, log_level=log_level, env=env, auth=auth,
                shared_data=shared_data, supervision=supervision, binary=opencode,
            ),
            timeout=timeout, progress=progress, cancel=cancel,
        )  # fmt: skip

    async def stop(
        self, refs: Sequence[str] = (), *, all: bool = False, timeout: float = DEFAULT_STOP_TIMEOUT
    ) -> list[StopResult]:
        """Stop instances gracefully and completely; only processes proven to be ours (those
        on a Ray cluster through their host's agent)."""
        from . import routing

        return await asyncio.to_thread(routing.stop, self.fleet, refs, all=all, timeout=timeout)

    async def start_existing(
        self,
        refs: Sequence[str],
        *,
        timeout: float = DEFAULT_START_TIMEOUT,
        progress: StartProgress | None = None,
        cancel: asyncio.Event | None = None,
    ) -> list[InstanceInfo]:
        """Start recorded instances that are not running, with their own settings; running
        ones are left alone (like `docker start`). Returns them all, fresh. Setting `cancel`
        stops again what it started, and it raises Interrupted."""
        from . import routing

        return await routing.start_existing(
            self.fleet, refs, timeout=timeout, progress=progress, cancel=cancel
        )

    async def restart(
        self,
        refs: Sequence[str] = (),
        *,
        all: bool = False,
        timeout: float = DEFAULT_START_TIMEOUT,
        progress: StartProgress | None = None,
        cancel: asyncio.Event | None = None,
    ) -> list[InstanceInfo]:
        """Stop (if running) and start again with the same name, spec, password and data;
        `all`: every instance not stopped on purpose. Setting `cancel` stops the ones it
        relaunched (they stay recorded), and it raises Interrupted."""
        from . import routing

        return await routing.restart(
            self.fleet, refs, all=all, timeout=timeout, progress=progress, cancel=cancel
        )

    # -- fleet files (ocm.toml) -------------------------------------------------------------
    async def fleet_diff(
        self, path: str | None = None, *, force_recreate: bool = False
    ) -> UpReport:
        """What `up` would do to converge the fleet to the fleet file (default ./ocm.toml)."""
        from .instances import compose

        return await asyncio.to_thread(
            compose.diff, self.fleet, path, force_recreate=force_recreate
        )

    async def up(
        self,
        path: str | None = None,
        *,
        recreate: bool = True,
        force_recreate: bool = False,
        remove_orphans: bool = False,
        timeout: float = DEFAULT_START_TIMEOUT,
        cancel: asyncio.Event | None = None,
    ) -> UpReport:
        """Converge to the fleet file: start what is missing in parallel, recreate what
        changed one at a time; only this file's project is ever touched. Setting `cancel`
        stops what it started (removing what it created) and raises Interrupted."""
        from .instances import compose, lifecycle

        return await lifecycle.interruptibly(
            lambda stop: compose.up(
                self.fleet, path, recreate=recreate, force_recreate=force_recreate,
                remove_orphans=remove_orphans, timeout=timeout, cancel=stop,
            ),
            cancel,
        )  # fmt: skip

    async def down(
        self, path: str | None = None, *, cancel: asyncio.Event | None = None
    ) -> list[StopResult]:
        """Stop the instances the fleet file's project created (they stay recorded); setting
        `cancel` stops no more of them and raises Interrupted."""
        from .instances import compose, lifecycle

        return await lifecycle.interruptibly(
            lambda stop: compose.down(self.fleet, path, cancel=stop), cancel
        )

    # -- after a reboot: save / resurrect, systemd units -------------------------------------
    async def save(self, *, force: bool = False) -> SaveReport:
        """Write the running fleet to $OCM_HOME/dump.json (atomic, 0600, the previous one kept
        as dump.json.bak); an empty fleet only with `force`."""
        from .instances import dump

        return await asyncio.to_thread(dump.save, self.fleet, force=force)

    async def resurrect(
        self, *, timeout: float = DEFAULT_START_TIMEOUT, cancel: asyncio.Event | None = None
    ) -> ResurrectReport:
        """Start what the saved dump holds that is not running (same names, settings and, when
        free, ports); nothing else is touched."""
        from .instances import dump, lifecycle

        return await lifecycle.interruptibly(
            lambda stop: dump.resurrect(self.fleet, timeout=timeout, cancel=stop), cancel
        )

    # -- a damaged registry ---------------------------------------------------------------
    async def backups(self) -> list[Backup]:
        """The registry's daily backups, newest first, each with its integrity_check."""
        from .instances import restore

        return await asyncio.to_thread(restore.backups, self.settings)

    async def restore(self, backup: str | None = None, *, force: bool = False) -> RestoreReport:
        """Replace the registry with a backup (the newest unless named) while the fleet runs:
        swapped atomically with writers paused, the replaced file kept, the running keepers'
        rows written back into it. Refused while the registry is sound, unless `force`."""
        from .instances import restore

        return await asyncio.to_thread(restore.restore, self.settings, backup, force=force)

    async def export_systemd(
        self,
        refs: Sequence[str] = (),
        *,
        all: bool = False,
        fleet_file: str | None = None,
        directory: str | None = None,
    ) -> SystemdExport:
        """Write systemd user units that bring instances (or the saved fleet, or a fleet
        file's project) back at boot; returns the paths and the commands to enable them."""
        from .instances import systemd

        return await asyncio.to_thread(
            systemd.export, self.fleet, refs, all=all, fleet_file=fleet_file, directory=directory
        )

    async def remove(self, refs: Sequence[str], *, force: bool = False) -> list[str]:
        """Forget stopped instances: record, password, private data (logs stay until cleanup)."""
        from . import routing

        return await asyncio.to_thread(routing.remove, self.fleet, refs, force=force)

    # -- a Ray cluster (`pip install 'opencode-manager[ray]'`) ------------------------------
    async def cluster_up(
        self, address: str | None = None, *, cancel: asyncio.Event | None = None
    ) -> ClusterReport:
        """Connect to the Ray cluster at `address` (kept for later commands) and reconcile one
        host agent per alive node; a missing agent is created and adopts its host's
        instances; instances of hosts that left are marked lost. Setting `cancel` stops
        between hosts (nothing marked lost), and it raises Interrupted."""
        from .cluster import link
        from .instances import lifecycle

        return await lifecycle.interruptibly(
            lambda stop: link.up(self.fleet, address, cancel=stop), cancel
        )

    async def cluster_hosts(self) -> ClusterReport:
        """Hosts, agents and instances per host, as they are (nothing created or changed)."""
        from .cluster import link

        return await asyncio.to_thread(link.survey, self.fleet)

    async def cluster_start(
        self,
        name: str | None = None,
        *,
        count: int = 1,
        directory: str | None = None,
        env: Sequence[str] = (),
        per_host: int | None = None,
        spread: bool = False,
        timeout: float = DEFAULT_START_TIMEOUT,
        cancel: asyncio.Event | None = None,
        opencode: str | None = None,
    ) -> list[InstanceInfo]:
        """Start instances on the cluster's hosts (by free memory, or evenly with `spread`),
        each bound to its host's address with a password, reachable here by URL: all or
        nothing. Setting `cancel` (or cancelling this coroutine) undoes the start on every
        host, and it raises Interrupted. `opencode`: their binary on the hosts (a version
        the hosts installed, or an absolute path), either line."""
        from . import routing

        return await routing.cluster_start(
            self.fleet, name, count=count, directory=directory, env=env, per_host=per_host,
            spread=spread, timeout=timeout, cancel=cancel, opencode=opencode,
        )  # fmt: skip

    async def cluster_down(self, *, timeout: float = DEFAULT_STOP_TIMEOUT) -> ClusterReport:
        """Stop every cluster instance through its agent, then end the agents."""
        from .cluster import link

        return await asyncio.to_thread(link.down, self.fleet, timeout)

    async def remote_add(
        self,
        name: str,
        url: str,
        *,
        username: str = DEFAULT_USERNAME,
        password: str | None = None,
    ) -> InstanceInfo:
        """Add an OpenCode server on another host by URL: checked at once (health, version,
        password), then reachable like any instance; its password is stored 0600."""
        from .instances import remote

        return await remote.added(self.fleet, name, url, username=username, password=password)

    async def remote_remove(self, names: Sequence[str]) -> list[str]:
        """Forget remote instances (the servers themselves are left alone)."""
        from .instances import remote

        return await asyncio.to_thread(remote.remove, self.fleet, names)

    async def cleanup(
        self, *, older_than: float = 0.0, dry_run: bool = False, force: bool = False
    ) -> CleanupReport:
        """Forget ended instances, reconcile dead ones, delete logs and dirs nobody owns
        (worktrees of tasks no longer recorded too, except one holding uncommitted files or
        unmerged commits: kept, with the reason, unless `force`)."""
        from .instances import lifecycle
        from .tasks import worktree

        return await asyncio.to_thread(
            lifecycle.cleanup, self.fleet, older_than=older_than, dry_run=dry_run, force=force,
            sweeps=[worktree.orphan_sweep(self.store, self.settings.worktrees_dir)],
        )  # fmt: skip

    async def instances(
        self,
        *,
        include_foreign: bool = True,
        probe_health: bool = True,
        measure_cpu: bool = True,
        names: Sequence[str] | None = None,
    ) -> list[InstanceInfo]:
        """Every managed instance (reconciled with what runs) and every foreign server."""
        from .instances.inventory import list_instances

        return await list_instances(
            self.fleet, include_foreign=include_foreign, probe_health=probe_health,
            measure_cpu=measure_cpu, names=names,
        )  # fmt: skip

    async def records(self) -> list[InstanceRecord]:
        """The registry's rows, as recorded (no process checks)."""
        return await asyncio.to_thread(self.fleet.records)

    async def resolve(self, ref: str) -> InstanceRecord:
        """A managed instance by name, port or URL."""
        return await asyncio.to_thread(self.fleet.resolve, ref)

    async def info(self, ref: str) -> InstanceInfo:
        """One instance (or foreign server) as `ls` shows it."""
        from .instances.inventory import instance_info

        return await instance_info(self.fleet, ref)

    async def status(self, ref: str) -> StatusReport:
        """The detailed report: process tree, memory, connections, sessions, MCP, LSP, errors."""
        from . import routing

        return await routing.status(self.fleet, ref)

    async def env(self, ref: str) -> dict[str, str]:
        """Variables that let OpenCode's own CLI, curl and SDKs reach the instance, and
        OPENCODE_BIN, the binary it runs (OpenCode need not be on PATH)."""
        from .instances.inventory import client_env

        return await asyncio.to_thread(client_env, self.fleet, ref)

    async def events(
        self, ref: str | None = None, *, limit: int | None = None, after: int | None = None
    ) -> list[LifecycleEvent]:
        """Lifecycle events of one instance, or of all, oldest first."""
        from .instances.inventory import lifecycle_events

        return await asyncio.to_thread(lifecycle_events, self.fleet, ref, limit, after)

    async def samples(self, ref: str, *, since: float | None = None) -> list[ResourceSample]:
        """The instance's CPU and memory over the last 30 minutes, as its keeper sampled
        them at each health check, oldest first."""
        from .instances import inventory

        return await asyncio.to_thread(inventory.samples, self.fleet, ref, since)

    async def logs(
        self,
        refs: Sequence[str],
        *,
        lines: int = 50,
        pattern: str | None = None,
        level: str | None = None,
    ) -> list[LogLine]:
        """The last `lines` lines of each instance's log (across rotated files), filtered."""
        from . import routing

        return await asyncio.to_thread(
            routing.logs, self.fleet, refs, lines=lines, pattern=pattern, level=level
        )

    async def follow_logs(
        self,
        refs: Sequence[str],
        *,
        lines: int = 0,
        pattern: str | None = None,
        level: str | None = None,
    ) -> AsyncIterator[LogLine]:
        """The last `lines` lines, then new ones as they are written (through rotations),
        until cancelled."""
        from .instances import logs

        async for line in logs.follow_instances(
            self.fleet, refs, lines=lines, pattern=pattern, level=level
        ):
            yield line

    # -- tasks -----------------------------------------------------------------------------
    async def run(
        self,
        prompt: str,
        options: TaskOptions | None = None,
        *,
        observer: Observer | None = None,
        cancel: asyncio.Event | None = None,
        detach: bool = False,
        checkpoint: Checkpoint | None = None,
    ) -> TaskRecord:
        """Run a task: dispatch over REST, follow it, store and return its record (with
        detach, return as soon as the prompt is sent; `wait` follows it). `checkpoint`, as
        for `batch_run`, is a seam for fault-injection tests."""
        from .tasks.dispatch import TaskOptions, run_task

        return await run_task(
            self.fleet, self.store, prompt, options or TaskOptions(), observer=observer,
            cancel=cancel, detach=detach, checkpoint=checkpoint,
        )  # fmt: skip

    async def wait(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        observer: Observer | None = None,
        cancel: asyncio.Event | None = None,
    ) -> TaskRecord:
        """Follow a task started with detach=True (or interrupted) to its end."""
        from .tasks.dispatch import wait_task

        return await wait_task(
            self.fleet, self.store, task_id, timeout=timeout, observer=observer, cancel=cancel
        )

    async def task(self, task_id: str) -> TaskRecord:
        """A task's record; a running one is first checked against its server."""
        from .tasks.dispatch import refresh_task

        return await refresh_task(self.fleet, self.store, task_id)

    async def tasks(
        self, *, batch_id: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[TaskRecord]:
        """Stored task records, oldest first (the newest `limit`); a standalone task still
        marked running is checked against its server first, so this agrees with `result`."""
        from .tasks.dispatch import list_tasks

        return await list_tasks(
            self.fleet, self.store, batch_id=batch_id, status=status, limit=limit
        )

    async def worktrees(self) -> list[WorktreeRow]:
        """Every task worktree: task, branch, status, whether it is still on disk, files."""
        from .tasks import worktree

        return await asyncio.to_thread(worktree.rows, self.store)

    async def worktree_remove(
        self, task_ids: Sequence[str] = (), *, merged: bool = False,
        older_than: float | None = None, force: bool = False,
    ) -> WorktreeRemoval:  # fmt: skip
        """Remove task worktrees (their branches, holding the agents' commits, stay); by task
        id, those whose branch has commits of its own merged into the repository's HEAD, or
        older ones. A running task's worktree is never removed, nor, unless `force`, one with
        uncommitted changes (kept, with the reason)."""
        from .tasks import worktree

        return await asyncio.to_thread(
            worktree.remove_recorded, self.store, task_ids, merged=merged,
            older_than=older_than, force=force,
        )  # fmt: skip

    async def task_patch(self, task_id: str) -> str:
        """A worktree task's changes as a patch `git apply` accepts on its base commit."""
        from .tasks import worktree

        return await asyncio.to_thread(worktree.task_patch, self.store, task_id)

    async def prune_results(self, older_than: float, *, dry_run: bool = False) -> PruneReport:
        """Delete finished batches and tasks that ended more than `older_than` seconds ago
        (never a running or resumable one), and give the space back."""
        return await asyncio.to_thread(self.store.prune_ended, older_than, dry_run=dry_run)

    async def known_ids(self, kind: str) -> list[str]:
        """Names or ids ocm knows, newest first, for shell completion: kind is "instance",
        "task", "batch" or "session" (sessions that ocm's tasks used). No server is asked."""
        return await asyncio.to_thread(self.store.known_ids, kind)

    async def count_tasks(self, *, batch_id: str | None = None, status: str | None = None) -> int:
        """How many stored task records match."""
        return await asyncio.to_thread(self.store.count_tasks, batch_id=batch_id, status=status)

    # -- batches ---------------------------------------------------------------------------
    async def batch_create(
        self,
        tasks: Sequence[BatchTask] | str,
        options: BatchOptions | None = None,
        *,
        source: str | None = None,
    ) -> BatchSummary:
        """Check and record a batch (tasks, or the text of a batch file); nothing runs yet."""
        from .tasks import batch

        return await asyncio.to_thread(
            batch.create_batch, self.fleet, self.store, tasks, options, source=source
        )

    async def batch_run(
        self,
        batch_id: str,
        *,
        listener: Listener | None = None,
        cancel: asyncio.Event | None = None,
        checkpoint: Checkpoint | None = None,
        requeue_cancelled: bool = False,
    ) -> BatchSummary:
        """Run (or resume) a recorded batch to its end: no task lost, none sent twice.

        A cancelled batch is refused unless `requeue_cancelled` (its cancelled tasks run).
        `checkpoint` is awaited with the name of every step a task passes ("session",
        "sending", "sent", "finished"): a seam for fault-injection tests.
        """
        from .tasks import batch

        return await batch.run_batch(
            self.fleet, self.store, batch_id, listener=listener, cancel=cancel,
            checkpoint=checkpoint, requeue_cancelled=requeue_cancelled,
        )  # fmt: skip

    async def batch(
        self,
        tasks: Sequence[BatchTask] | str,
        options: BatchOptions | None = None,
        *,
        source: str | None = None,
        listener: Listener | None = None,
        cancel: asyncio.Event | None = None,
    ) -> BatchSummary:
        """Create a batch and run it."""
        from .tasks import batch

        return await batch.create_and_run(
            self.fleet, self.store, tasks, options, source=source, listener=listener,
            cancel=cancel,
        )  # fmt: skip

    async def batch_resume(
        self,
        batch_id: str,
        *,
        listener: Listener | None = None,
        cancel: asyncio.Event | None = None,
        requeue_cancelled: bool = False,
    ) -> BatchSummary:
        """Finish an interrupted batch (refused while its runner is alive); with
        `requeue_cancelled`, run the tasks a cancel stopped."""
        from .tasks import batch

        return await batch.run_batch(
            self.fleet, self.store, batch_id, listener=listener, cancel=cancel,
            requeue_cancelled=requeue_cancelled,
        )  # fmt: skip

    async def batches(self, *, limit: int | None = None) -> list[BatchSummary]:
        """Every batch, oldest first (the newest `limit` when given), without their tasks."""
        from .tasks.summary import list_batches

        return await asyncio.to_thread(list_batches, self.store, limit=limit)

    async def count_batches(self) -> int:
        """How many batches are stored."""
        return await asyncio.to_thread(self.store.count_batches)

    async def batch_show(self, batch_id: str) -> BatchSummary:
        """One batch with its tasks."""
        from .tasks.summary import summary

        return await asyncio.to_thread(summary, self.store, batch_id)

    async def batch_remove(self, batch_ids: Sequence[str]) -> dict[str, int]:
        """Delete batches and their results (refused while a batch's runner is alive);
        return the task count removed per batch."""
        return await asyncio.to_thread(self.store.remove_batches, batch_ids, process.is_alive)

    async def batch_cancel(self, batch_id: str) -> BatchSummary:
        """Cancel a batch: its runner aborts running tasks and cancels the rest; a batch
        whose runner is gone is cancelled here."""
        from .tasks.batch import cancel_batch

        return await cancel_batch(self.fleet, self.store, batch_id)

    # -- sessions --------------------------------------------------------------------------
    async def sessions(self, ref: str | None = None) -> list[SessionRow]:
        """Sessions of each running instance's project directory, newest last."""
        from .tasks import sessions

        return await sessions.list_sessions(self.fleet, ref)

    async def session(self, session_id: str, ref: str | None = None) -> SessionRow:
        """One session, wherever it is (every running instance is asked when ref is None)."""
        from .tasks import sessions

        return await sessions.find_session(self.fleet, session_id, ref)

    async def session_messages(self, session_id: str, ref: str | None = None) -> list[Message]:
        """A session's messages with their parts, oldest first."""
        from .tasks import sessions

        return await sessions.session_messages(self.fleet, session_id, ref)

    async def session_todo(self, session_id: str, ref: str | None = None) -> list[Any]:
        """A session's todo list."""
        from .tasks import sessions

        return await sessions.session_todo(self.fleet, session_id, ref)

    async def session_diff(self, session_id: str, ref: str | None = None) -> list[dict[str, Any]]:
        """The files a session changed."""
        from .tasks import sessions

        return await sessions.session_diff(self.fleet, session_id, ref)

    async def abort_session(self, session_id: str, ref: str | None = None) -> str:
        """Abort the session's turn; returns the instance's name."""
        from .tasks import sessions

        return await sessions.abort_session(self.fleet, session_id, ref)

    async def remove_session(self, session_id: str, ref: str | None = None) -> str:
        """Abort, then delete the session; returns the instance's name."""
        from .tasks import sessions

        return await sessions.remove_session(self.fleet, session_id, ref)

    async def session_asks(self, session_id: str, ref: str | None = None) -> list[PendingAsk]:
        """The permissions and questions a session (or its subagents) waits on."""
        from .tasks import sessions

        return await sessions.session_asks(self.fleet, session_id, ref)

    async def reply_permission(
        self,
        session_id: str,
        ask_id: str,
        reply: str,
        *,
        message: str | None = None,
        ref: str | None = None,
    ) -> PendingAsk:
        """Answer a pending permission ask: "once", "always" or "reject" (with a message)."""
        from .tasks import sessions

        return await sessions.reply_permission(
            self.fleet, self.store, session_id, ask_id, reply, message, ref
        )

    async def answer_question(
        self,
        session_id: str,
        ask_id: str,
        answers: list[list[str]] | None,
        *,
        ref: str | None = None,
    ) -> PendingAsk:
        """Answer a pending question (a list of chosen labels per question; None rejects)."""
        from .tasks import sessions

        return await sessions.answer_question(
            self.fleet, self.store, session_id, ask_id, answers, ref
        )

    async def api(
        self,
        ref: str,
        method: str,
        path: str,
        data: str | None = None,
        directory: str | None = None,
    ) -> Any:
        """Any OpenCode API call on an instance, authenticated (JSON in, JSON out)."""
        from .tasks import sessions

        return await sessions.api(self.fleet, ref, method, path, data, directory)

    async def attach_command(
        self, ref: str, *, session_id: str | None = None, directory: str | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """argv and environment that run `opencode attach` on an instance."""
        from .tasks import sessions

        return await sessions.attach_command(
            self.fleet, ref, session_id=session_id, directory=directory
        )

    # -- observe ---------------------------------------------------------------------------
    async def monitor(
        self, refs: Sequence[str] = (), *, follow_new: bool = False
    ) -> AsyncIterator[Received]:
        """One merged live stream of the events of many instances (until cancelled)."""
        from .observe import monitor

        async for item in monitor.watch(self.fleet, refs, follow_new=follow_new):
            yield item

    async def top(self) -> FleetFrame:
        """A snapshot of the fleet: status, CPU, memory, connections, sessions, last event."""
        from .observe.fleetview import snapshot

        return await snapshot(self.fleet)

    async def task_totals(self) -> dict[str, Any]:
        """Tasks by status, and token and cost totals over every stored task."""
        return await asyncio.to_thread(self.store.totals)

    async def metrics(self) -> str:
        """The Prometheus exposition of the fleet and the task results."""
        from .observe import metrics

        return await metrics.scrape(self.fleet, self.store)

    async def serve_metrics(
        self, host: str, port: int, *, ready: Callable[[str], None] | None = None
    ) -> None:
        """Serve /metrics on host:port (a fresh reading at every scrape) until cancelled;
        `ready` gets the URL once the port is bound (a taken port raises ConflictError)."""
        from .observe import metrics

        return await metrics.serve(self.fleet, self.store, host, port, ready=ready)

    # -- the tool itself -------------------------------------------------------------------
    async def doctor(self) -> list[Check]:
        """Every check (binary, home, registry, instances, ports) with the fix when failing."""
        from .instances.doctor import run_checks

        return await run_checks(self.fleet)

    async def project_checks(self, refs: Sequence[str], *, mcp: bool = True) -> list[Check]:
        """What OpenCode makes of each instance's project: a config it cannot parse (the
        server still answers health), MCP servers that failed to start (with why)."""
        from .instances.doctor import check_projects

        return await check_projects(self.fleet, refs, mcp=mcp)

    async def install(self, version: str = PINNED_OPENCODE_VERSION) -> Binary:
        """Install a pinned OpenCode from npm into $OCM_HOME (idempotent)."""
        from .instances.binary import install

        return await asyncio.to_thread(install, self.settings, version)

    async def demo(
        self, *, count: int = 3, say: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Offline demo: a fleet on the bundled scripted model, a task each, then stop."""
        from .demo import run_demo

        return await run_demo(self.fleet, count=count, say=say)

    # -- provider limits -------------------------------------------------------------------
    async def limits(self) -> list[LimitStatus]:
        """Every provider limit with its traffic now: slots in use, turns started in the last
        minute, the queue, and the provider's circuit breaker."""
        from .limits import table as limit_table

        return await asyncio.to_thread(limit_table.overview, self.fleet.registry)

    async def queue(self) -> list[QueuedTicket]:
        """The tasks waiting for a slot of their provider, in queue order, with their place."""
        from .limits import table as limit_table

        return await asyncio.to_thread(limit_table.queue, self.fleet.registry)

    async def limit_set(
        self, scope: str, *, concurrency: int | None = None, rpm: int | None = None
    ) -> Limit:
        """Create or replace the limit of PROVIDER or PROVIDER/MODEL, shared by every task
        (whichever front sent it): at most `concurrency` turns at once, `rpm` a minute."""
        from .limits import table as limit_table

        return await asyncio.to_thread(
            limit_table.set_limit, self.fleet.registry, scope, concurrency=concurrency, rpm=rpm
        )

    async def limit_remove(self, scopes: Sequence[str]) -> list[str]:
        """Remove limits (all or none: an unknown one is NotFoundError)."""
        from .limits import table as limit_table

        return await asyncio.to_thread(limit_table.remove_limits, self.fleet.registry, scopes)
