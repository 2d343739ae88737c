"""The facade: `AsyncManager` (async-native) and `Manager` (its sync twin).

    import asyncio
    from opencode_manager import AsyncManager

    async def main() -> None:
        async with AsyncManager() as ocm:
            [info] = await ocm.start(count=1)
            record = await ocm.run("BASH: echo hi", TaskOptions(instance=info.name))
            await ocm.stop([info.name])

    asyncio.run(main())

Every method is a one-line delegation to the module that does the work. Blocking work
(process control, polling the registry while instances start or stop) runs in worker threads,
so the event loop of a long-lived front (dashboard, MCP server, notebook) never stalls.

`Manager` has the same methods, blocking. It runs the coroutines on a private event loop in a
thread of its own (anyio's blocking portal, via `portal.Portal`), so it works from any thread,
including one whose event loop is running (a Jupyter cell, a FastAPI handler), where
`asyncio.run` would refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import process
from .errors import NotFoundError, UsageError
from .instances import lifecycle
from .instances import spec as specs
from .instances.fleet import Fleet
from .limits import table as limit_table
from .models import (
    DEFAULT_USERNAME,
    InstanceInfo,
    InstanceRecord,
    LifecycleEvent,
    ResourceSample,
    State,
    TaskRecord,
    TaskStatus,
)
from .portal import Portal
from .settings import PINNED_OPENCODE_VERSION, Settings

if TYPE_CHECKING:
    import httpx

    from .client.types import Message
    from .cluster.link import ClusterReport
    from .instances.binary import Binary
    from .instances.compose import UpReport
    from .instances.doctor import Check
    from .instances.dump import ResurrectReport, SaveReport
    from .instances.fleetfile import FleetFile
    from .instances.inventory import StatusReport
    from .instances.lifecycle import CleanupReport, StartProgress, StopResult
    from .instances.logs import LogLine
    from .instances.restore import Backup, RestoreReport
    from .instances.systemd import SystemdExport
    from .limits.policy import Limit
    from .limits.table import LimitStatus
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

DEFAULT_START_TIMEOUT = lifecycle.DEFAULT_START_TIMEOUT
DEFAULT_STOP_TIMEOUT = lifecycle.DEFAULT_STOP_TIMEOUT


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
        requested = specs.build_specs(
            name=name, count=count, directory=directory, port=port, port_range=port_range,
            hostname=hostname, cors=cors, log_level=log_level, env=env, auth=auth,
            shared_data=shared_data, supervision=supervision, binary=opencode,
        )  # fmt: skip
        stop = threading.Event()
        starting = asyncio.to_thread(
            lifecycle.start, self.fleet, requested, timeout=timeout, progress=progress,
            cancel=stop,
        )  # fmt: skip
        job = asyncio.ensure_future(starting)
        asked = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        try:
            waiting = {job, asked} if asked is not None else {job}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not job.done():
                stop.set()  # the thread rolls back, then raises Interrupted
            names = await job
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.shield(job)
            raise
        finally:
            if asked is not None:
                asked.cancel()
        return await self._fresh(names)

    async def stop(
        self, refs: Sequence[str] = (), *, all: bool = False, timeout: float = DEFAULT_STOP_TIMEOUT
    ) -> list[StopResult]:
        """Stop instances gracefully and completely; only processes proven to be ours (those
        on a Ray cluster through their host's agent)."""
        from .cluster import routing

        return await asyncio.to_thread(routing.stop, self.fleet, refs, all=all, timeout=timeout)

    async def start_existing(
        self,
        refs: Sequence[str],
        *,
        timeout: float = DEFAULT_START_TIMEOUT,
        progress: StartProgress | None = None,
    ) -> list[InstanceInfo]:
        """Start recorded instances that are not running, with their own settings; running
        ones are left alone (like `docker start`). Returns them all, fresh."""
        await asyncio.to_thread(
            lifecycle.start_existing, self.fleet, refs, timeout=timeout, progress=progress
        )
        names = [r.name for r in await asyncio.to_thread(self.fleet.resolve_all, refs)]
        return await self._fresh(names)

    async def restart(
        self,
        refs: Sequence[str] = (),
        *,
        all: bool = False,
        timeout: float = DEFAULT_START_TIMEOUT,
        progress: StartProgress | None = None,
    ) -> list[InstanceInfo]:
        """Stop (if running) and start again with the same name, spec, password and data;
        `all`: every instance not stopped on purpose."""
        from .cluster import routing

        names = await asyncio.to_thread(
            routing.restart, self.fleet, refs, timeout=timeout, progress=progress, all=all
        )
        return await self._fresh(names)

    # -- fleet files (ocm.toml) -------------------------------------------------------------
    def _fleet_file(self, path: str | None) -> FleetFile:
        from .instances.fleetfile import find_fleet_file, load_fleet_file

        return load_fleet_file(find_fleet_file(Path("."), path))

    async def fleet_diff(
        self, path: str | None = None, *, force_recreate: bool = False
    ) -> UpReport:
        """What `up` would do to converge the fleet to the fleet file (default ./ocm.toml)."""
        from .instances import compose

        def work() -> UpReport:
            return compose.diff(self.fleet, self._fleet_file(path), force_recreate=force_recreate)

        return await asyncio.to_thread(work)

    async def up(
        self,
        path: str | None = None,
        *,
        recreate: bool = True,
        force_recreate: bool = False,
        remove_orphans: bool = False,
        timeout: float = DEFAULT_START_TIMEOUT,
    ) -> UpReport:
        """Converge to the fleet file: start what is missing in parallel, recreate what
        changed one at a time; only this file's project is ever touched."""
        from .instances import compose

        def work() -> UpReport:
            return compose.up(
                self.fleet, self._fleet_file(path), recreate=recreate,
                force_recreate=force_recreate, remove_orphans=remove_orphans, timeout=timeout,
            )  # fmt: skip

        return await asyncio.to_thread(work)

    async def down(self, path: str | None = None) -> list[StopResult]:
        """Stop the instances the fleet file's project created (they stay recorded)."""
        from .instances import compose

        def work() -> list[StopResult]:
            return compose.down(self.fleet, self._fleet_file(path).project)

        return await asyncio.to_thread(work)

    # -- after a reboot: save / resurrect, systemd units -------------------------------------
    async def save(self, *, force: bool = False) -> SaveReport:
        """Write the running fleet to $OCM_HOME/dump.json (atomic, 0600, the previous one kept
        as dump.json.bak); an empty fleet only with `force`."""
        from .instances import dump

        return await asyncio.to_thread(dump.save, self.fleet, force=force)

    async def resurrect(self, *, timeout: float = DEFAULT_START_TIMEOUT) -> ResurrectReport:
        """Start what the saved dump holds that is not running (same names, settings and, when
        free, ports); nothing else is touched."""
        from .instances import dump

        return await asyncio.to_thread(dump.resurrect, self.fleet, timeout=timeout)

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

        def work() -> SystemdExport:
            found = None
            if fleet_file is not None:
                loaded = self._fleet_file(fleet_file)
                found = (loaded.path.resolve(), loaded.project)
            where = Path(directory).expanduser().resolve() if directory else None
            return systemd.export(self.fleet, refs, all=all, fleet_file=found, directory=where)

        return await asyncio.to_thread(work)

    async def remove(self, refs: Sequence[str], *, force: bool = False) -> list[str]:
        """Forget stopped instances: record, password, private data (logs stay until cleanup)."""
        from .cluster import routing

        return await asyncio.to_thread(routing.remove, self.fleet, refs, force=force)

    # -- a Ray cluster (`pip install 'opencode-manager[ray]'`) ------------------------------
    async def cluster_up(self, address: str | None = None) -> ClusterReport:
        """Connect to the Ray cluster at `address` (kept for later commands) and reconcile one
        host agent per alive node; a missing agent is created and adopts its host's
        instances; instances of hosts that left are marked lost."""
        from .cluster.link import Link, save_address

        def work() -> ClusterReport:
            link = Link(self.fleet, address)
            report = link.reconcile()
            save_address(self.fleet, link.address)
            return report

        return await asyncio.to_thread(work)

    async def cluster_hosts(self) -> ClusterReport:
        """Hosts, agents and instances per host, as they are (nothing created or changed)."""
        from .cluster.link import Link

        return await asyncio.to_thread(lambda: Link(self.fleet).survey())

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
        from .cluster.link import Link

        where = str(Path(directory).expanduser().resolve()) if directory else os.getcwd()
        stop = threading.Event()

        def work() -> list[str]:
            return Link(self.fleet).start(
                name=name, count=count, directory=where, env=env, per_host=per_host,
                spread=spread, timeout=timeout, cancel=stop, opencode=opencode,
            )  # fmt: skip

        job = asyncio.ensure_future(asyncio.to_thread(work))
        asked = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        try:
            await asyncio.wait({job, asked} if asked else {job}, return_when="FIRST_COMPLETED")
            if not job.done():
                stop.set()  # the thread undoes the start, then raises Interrupted
            names = await job
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.shield(job)
            raise
        finally:
            if asked is not None:
                asked.cancel()
        return await self._fresh(names)

    async def cluster_down(self, *, timeout: float = DEFAULT_STOP_TIMEOUT) -> ClusterReport:
        """Stop every cluster instance through its agent, then end the agents."""
        from .cluster.link import Link

        return await asyncio.to_thread(lambda: Link(self.fleet).down(timeout))

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

        await remote.add(self.fleet, name, url, username=username, password=password)
        return await self.info(name)

    async def remote_remove(self, names: Sequence[str]) -> list[str]:
        """Forget remote instances (the servers themselves are left alone)."""
        from .instances import remote

        return await asyncio.to_thread(remote.remove, self.fleet, names)

    async def cleanup(self, *, older_than: float = 0.0, dry_run: bool = False) -> CleanupReport:
        """Forget ended instances, reconcile dead ones, delete logs and dirs nobody owns
        (worktrees of tasks no longer recorded too)."""
        from .tasks import worktree as worktrees

        report = await asyncio.to_thread(
            lifecycle.cleanup, self.fleet, older_than=older_than, dry_run=dry_run
        )
        known = set(await asyncio.to_thread(self.store.recent_ids, "task", 1 << 30))
        for path in worktrees.orphans(self.settings.worktrees_dir, known):
            if not dry_run:
                await asyncio.to_thread(worktrees.remove_orphan, path)
            report.removed_files.append(str(path))
        return report

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

    async def _fresh(self, names: list[str]) -> list[InstanceInfo]:
        # Just started: a CPU reading would only measure the start itself, so skip the window.
        infos = await self.instances(include_foreign=False, measure_cpu=False, names=names)
        by_name = {info.name: info for info in infos}
        return [by_name[name] for name in names if name in by_name]

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
        from .instances.inventory import status_report

        report = await status_report(self.fleet, ref)
        record = await asyncio.to_thread(self.fleet.find, ref)
        if isinstance(record, InstanceRecord) and record.spec.node:
            from .cluster import routing

            if record.state is not State.CRASHED:  # a lost host has nothing to say
                report = await asyncio.to_thread(routing.with_host, self.fleet, record, report)
        return report

    async def env(self, ref: str) -> dict[str, str]:
        """Variables that let OpenCode's own CLI, curl and SDKs reach the instance."""
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

        def read() -> list[ResourceSample]:
            return self.fleet.registry.samples(self.fleet.resolve(ref).name, since=since)

        return await asyncio.to_thread(read)

    async def logs(
        self,
        refs: Sequence[str],
        *,
        lines: int = 50,
        pattern: str | None = None,
        level: str | None = None,
    ) -> list[LogLine]:
        """The last `lines` lines of each instance's log (across rotated files), filtered."""
        from .instances.logs import line_filter, read_logs

        line_filter(pattern, level, lines)  # bad input first, before looking anything up
        from .cluster import routing

        local, cluster = await asyncio.to_thread(routing.split, self.fleet, refs)
        found: list[LogLine] = []
        if local or not cluster:
            sources = await self._log_sources(local)
            found = await asyncio.to_thread(read_logs, sources, lines, pattern, level)
        if cluster:
            found += await asyncio.to_thread(
                routing.logs, self.fleet, cluster, lines, pattern, level
            )
        return found

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
        from .instances.logs import follow_async, line_filter

        line_filter(pattern, level, lines)  # bad input first, before looking anything up
        sources = await self._log_sources(refs)
        async for line in follow_async(sources, lines=lines, pattern=pattern, level=level):
            yield line

    async def _log_sources(self, refs: Sequence[str]) -> list[tuple[str, str]]:
        if not refs:
            from .errors import UsageError

            raise UsageError("which instances? give names, ports or URLs")
        sources: dict[str, str] = {}
        for ref in refs:
            try:
                name = (await asyncio.to_thread(self.fleet.resolve, ref)).name
            except NotFoundError:
                # A removed instance whose log is kept (until `ocm cleanup`) is still read.
                path = self.settings.log_path(ref)
                if not specs.NAME_RE.match(ref) or not path.exists():
                    raise
                name = ref
            sources.setdefault(name, str(self.settings.log_path(name)))
        return list(sources.items())

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
        """Stored task records, oldest first (the newest `limit`).

        A standalone task still marked running is checked against its server first (its
        `ocm run` may have died with its terminal), so this agrees with `result`."""
        from .tasks.dispatch import refresh_task

        records = await asyncio.to_thread(
            self.store.list_tasks, batch_id=batch_id, status=status, limit=limit
        )
        stale = [i for i, r in enumerate(records) if r.status is TaskStatus.RUNNING and
                 r.batch_id is None and r.prompted]  # fmt: skip
        if not stale:
            return records
        gate = asyncio.Semaphore(8)

        async def refreshed(index: int) -> None:
            async with gate:
                records[index] = await refresh_task(self.fleet, self.store, records[index].id)

        await asyncio.gather(*(refreshed(i) for i in stale))
        if status is not None:
            records = [r for r in records if r.status.value == status]
        return records

    async def worktrees(self) -> list[WorktreeRow]:
        """Every task worktree: task, branch, status, whether it is still on disk, files."""
        from .tasks.worktree import row

        return [row(r) for r in await asyncio.to_thread(self.store.with_worktrees)]

    async def worktree_remove(
        self, task_ids: Sequence[str] = (), *, merged: bool = False,
        older_than: float | None = None, force: bool = False,
    ) -> WorktreeRemoval:  # fmt: skip
        """Remove task worktrees (their branches, holding the agents' commits, stay); by task
        id, those whose branch has commits of its own merged into the repository's HEAD, or
        older ones. A running task's worktree is never removed, nor, unless `force`, one with
        uncommitted changes (kept, with the reason)."""
        from .tasks import worktree as worktrees

        records = await asyncio.to_thread(self.store.with_worktrees)
        return await asyncio.to_thread(
            worktrees.remove_chosen, records, list(task_ids), merged=merged,
            older_than=older_than, now=time.time(), force=force,
        )  # fmt: skip

    async def task_patch(self, task_id: str) -> str:
        """A worktree task's changes as a patch `git apply` accepts on its base commit."""
        from .tasks import worktree as worktrees

        record = await asyncio.to_thread(self.store.get, task_id)
        if record.worktree is None:
            raise UsageError(f"task {task_id} did not run in a worktree (ocm run --worktree)")
        return await asyncio.to_thread(
            worktrees.patch, worktrees.Worktree.from_dict(record.worktree)
        )

    async def prune_results(self, older_than: float, *, dry_run: bool = False) -> PruneReport:
        """Delete finished batches and tasks that ended more than `older_than` seconds ago
        (never a running or resumable one), and give the space back."""
        if older_than < 0:
            raise UsageError("older_than must be 0 or more seconds")
        before = time.time() - older_than
        return await asyncio.to_thread(self.store.prune, before, dry_run=dry_run)

    async def known_ids(self, kind: str) -> list[str]:
        """Names or ids ocm knows, newest first, for shell completion: kind is "instance",
        "task", "batch" or "session" (sessions that ocm's tasks used). No server is asked."""
        if kind == "instance":
            records = await asyncio.to_thread(self.fleet.records)
            return [r.name for r in sorted(records, key=lambda r: -r.created_at)]
        if kind not in ("task", "batch", "session"):
            raise UsageError(f"unknown kind {kind!r}: instance, task, batch or session")
        return await asyncio.to_thread(self.store.recent_ids, kind)

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
        from .tasks.batch import BatchRun

        extra: dict[str, Any] = {"checkpoint": checkpoint} if checkpoint else {}
        run = await asyncio.to_thread(
            BatchRun.claim, self.fleet, self.store, batch_id, listener=listener, cancel=cancel,
            requeue_cancelled=requeue_cancelled, **extra,
        )  # fmt: skip
        return await run.run()

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
        created = await self.batch_create(tasks, options, source=source)
        return await self.batch_run(created.id, listener=listener, cancel=cancel)

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
        return await self.batch_run(
            batch_id, listener=listener, cancel=cancel, requeue_cancelled=requeue_cancelled
        )

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
        removed: dict[str, int] = {}
        for batch_id in dict.fromkeys(batch_ids):
            removed[batch_id] = await asyncio.to_thread(
                self.store.remove_batch, batch_id, process.is_alive
            )
        return removed

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
        from .tasks import sessions

        return await sessions.session_messages(self.fleet, session_id, ref)

    async def session_todo(self, session_id: str, ref: str | None = None) -> list[Any]:
        from .tasks import sessions

        return await sessions.session_todo(self.fleet, session_id, ref)

    async def session_diff(self, session_id: str, ref: str | None = None) -> list[dict[str, Any]]:
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

        return await sessions.reply_permission(self.fleet, session_id, ask_id, reply, message, ref)

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

        return await sessions.answer_question(self.fleet, session_id, ask_id, answers, ref)

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

        return await asyncio.to_thread(
            sessions.attach_command, self.fleet, ref, session_id=session_id, directory=directory
        )

    # -- observe ---------------------------------------------------------------------------
    async def monitor(
        self, refs: Sequence[str] = (), *, follow_new: bool = False
    ) -> AsyncIterator[Received]:
        """One merged live stream of the events of many instances (until cancelled)."""
        from .observe.monitor import Monitor

        watcher = await asyncio.to_thread(Monitor, self.fleet, refs, follow_new=follow_new)
        async for item in watcher.events():
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
        from .observe.metrics import exposition

        frame, totals = await asyncio.gather(self.top(), self.task_totals())
        return exposition(frame, totals)

    async def serve_metrics(
        self, host: str, port: int, *, ready: Callable[[str], None] | None = None
    ) -> None:
        """Serve /metrics on host:port (a fresh reading at every scrape) until cancelled;
        `ready` gets the URL once the port is bound (a taken port raises ConflictError)."""
        from .observe.metrics import start_server

        loop = asyncio.get_running_loop()

        async def reading() -> tuple[FleetFrame, dict[str, Any]]:
            frame, totals = await asyncio.gather(self.top(), self.task_totals())
            return frame, totals

        def read() -> tuple[FleetFrame, dict[str, Any]]:
            # In the server's request thread: the gather must be made in the loop, not here
            # (a thread without a loop cannot make one: every scrape answered 500).
            return asyncio.run_coroutine_threadsafe(reading(), loop).result()

        server = await asyncio.to_thread(start_server, read, host, port)
        if ready is not None:
            ready(f"http://{host}:{server.server_port}/metrics")
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(server.shutdown)

    # -- the tool itself -------------------------------------------------------------------
    async def doctor(self) -> list[Check]:
        """Every check (binary, home, registry, instances, ports) with the fix when failing."""
        from .instances.doctor import run_checks

        return await run_checks(self.fleet)

    async def project_checks(self, refs: Sequence[str], *, mcp: bool = True) -> list[Check]:
        """What OpenCode makes of each instance's project: a config it cannot parse (the
        server still answers health), MCP servers that failed to start (with why)."""
        from .instances.doctor import project_checks

        records = [self.fleet.resolve(ref) for ref in refs]
        found = await asyncio.gather(*(project_checks(self.fleet, r, mcp=mcp) for r in records))
        return [check for checks in found for check in checks]

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
        return await asyncio.to_thread(limit_table.overview, self.fleet.registry)

    async def limit_set(
        self, scope: str, *, concurrency: int | None = None, rpm: int | None = None
    ) -> Limit:
        """Create or replace the limit of PROVIDER or PROVIDER/MODEL, shared by every task
        (whichever front sent it): at most `concurrency` turns at once, `rpm` a minute."""
        return await asyncio.to_thread(
            limit_table.set_limit, self.fleet.registry, scope, concurrency=concurrency, rpm=rpm
        )

    async def limit_remove(self, scopes: Sequence[str]) -> list[str]:
        """Remove limits (all or none: an unknown one is NotFoundError)."""
        return await asyncio.to_thread(limit_table.remove_limits, self.fleet.registry, scopes)


class Manager:
    """The sync twin of `AsyncManager`: the same methods, blocking, usable from any thread
    (also while an event loop runs in it)."""

    def __init__(
        self, settings: Settings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.aio = AsyncManager(settings, transport=transport)
        self.settings = self.aio.settings
        self._portal = Portal()

    def _call(self, make: Callable[[], Any]) -> Any:
        return self._portal.call(make)

    def close(self) -> None:
        try:
            if self.aio.fleet.http_open:  # made on the portal's loop: closed there
                self._call(self.aio.fleet.aclose_http)
        finally:
            self._portal.stop()
            self.aio.fleet.close()

    def __enter__(self) -> Manager:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- instances -------------------------------------------------------------------------
    def start(
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
        opencode: str | None = None,
    ) -> list[InstanceInfo]:
        result: list[InstanceInfo] = self._call(
            lambda: self.aio.start(
                name,
                count=count,
                directory=directory,
                port=port,
                port_range=port_range,
                hostname=hostname,
                cors=cors,
                log_level=log_level,
                env=env,
                auth=auth,
                shared_data=shared_data,
                supervision=supervision,
                timeout=timeout,
                progress=progress,
                opencode=opencode,
            )
        )
        return result

    def stop(
        self, refs: Sequence[str] = (), *, all: bool = False, timeout: float = DEFAULT_STOP_TIMEOUT
    ) -> list[StopResult]:
        result: list[StopResult] = self._call(lambda: self.aio.stop(refs, all=all, timeout=timeout))
        return result

    def start_existing(
        self,
        refs: Sequence[str],
        *,
        timeout: float = DEFAULT_START_TIMEOUT,
        progress: StartProgress | None = None,
    ) -> list[InstanceInfo]:
        result: list[InstanceInfo] = self._call(
            lambda: self.aio.start_existing(refs, timeout=timeout, progress=progress)
        )
        return result

    def restart(
        self,
        refs: Sequence[str] = (),
        *,
        all: bool = False,
        timeout: float = DEFAULT_START_TIMEOUT,
        progress: StartProgress | None = None,
    ) -> list[InstanceInfo]:
        result: list[InstanceInfo] = self._call(
            lambda: self.aio.restart(refs, all=all, timeout=timeout, progress=progress)
        )
        return result

    def fleet_diff(self, path: str | None = None, *, force_recreate: bool = False) -> UpReport:
        result: UpReport = self._call(
            lambda: self.aio.fleet_diff(path, force_recreate=force_recreate)
        )
        return result

    def up(
        self,
        path: str | None = None,
        *,
        recreate: bool = True,
        force_recreate: bool = False,
        remove_orphans: bool = False,
        timeout: float = DEFAULT_START_TIMEOUT,
    ) -> UpReport:
        result: UpReport = self._call(
            lambda: self.aio.up(
                path,
                recreate=recreate,
                force_recreate=force_recreate,
                remove_orphans=remove_orphans,
                timeout=timeout,
            )
        )
        return result

    def down(self, path: str | None = None) -> list[StopResult]:
        result: list[StopResult] = self._call(lambda: self.aio.down(path))
        return result

    def save(self, *, force: bool = False) -> SaveReport:
        result: SaveReport = self._call(lambda: self.aio.save(force=force))
        return result

    def resurrect(self, *, timeout: float = DEFAULT_START_TIMEOUT) -> ResurrectReport:
        result: ResurrectReport = self._call(lambda: self.aio.resurrect(timeout=timeout))
        return result

    def backups(self) -> list[Backup]:
        result: list[Backup] = self._call(self.aio.backups)
        return result

    def restore(self, backup: str | None = None, *, force: bool = False) -> RestoreReport:
        result: RestoreReport = self._call(lambda: self.aio.restore(backup, force=force))
        return result

    def export_systemd(
        self,
        refs: Sequence[str] = (),
        *,
        all: bool = False,
        fleet_file: str | None = None,
        directory: str | None = None,
    ) -> SystemdExport:
        result: SystemdExport = self._call(
            lambda: self.aio.export_systemd(
                refs, all=all, fleet_file=fleet_file, directory=directory
            )
        )
        return result

    def remove(self, refs: Sequence[str], *, force: bool = False) -> list[str]:
        result: list[str] = self._call(lambda: self.aio.remove(refs, force=force))
        return result

    def cluster_up(self, address: str | None = None) -> ClusterReport:
        result: ClusterReport = self._call(lambda: self.aio.cluster_up(address))
        return result

    def cluster_hosts(self) -> ClusterReport:
        result: ClusterReport = self._call(lambda: self.aio.cluster_hosts())
        return result

    def cluster_start(
        self,
        name: str | None = None,
        *,
        count: int = 1,
        directory: str | None = None,
        env: Sequence[str] = (),
        per_host: int | None = None,
        spread: bool = False,
        timeout: float = DEFAULT_START_TIMEOUT,
        opencode: str | None = None,
    ) -> list[InstanceInfo]:
        result: list[InstanceInfo] = self._call(
            lambda: self.aio.cluster_start(
                name,
                count=count,
                directory=directory,
                env=env,
                per_host=per_host,
                spread=spread,
                timeout=timeout,
                opencode=opencode,
            )
        )
        return result

    def cluster_down(self, *, timeout: float = DEFAULT_STOP_TIMEOUT) -> ClusterReport:
        result: ClusterReport = self._call(lambda: self.aio.cluster_down(timeout=timeout))
        return result

    def remote_add(
        self,
        name: str,
        url: str,
        *,
        username: str = DEFAULT_USERNAME,
        password: str | None = None,
    ) -> InstanceInfo:
        result: InstanceInfo = self._call(
            lambda: self.aio.remote_add(name, url, username=username, password=password)
        )
        return result

    def remote_remove(self, names: Sequence[str]) -> list[str]:
        result: list[str] = self._call(lambda: self.aio.remote_remove(names))
        return result

    def cleanup(self, *, older_than: float = 0.0, dry_run: bool = False) -> CleanupReport:
        result: CleanupReport = self._call(
            lambda: self.aio.cleanup(older_than=older_than, dry_run=dry_run)
        )
        return result

    def instances(
        self,
        *,
        include_foreign: bool = True,
        probe_health: bool = True,
        measure_cpu: bool = True,
        names: Sequence[str] | None = None,
    ) -> list[InstanceInfo]:
        result: list[InstanceInfo] = self._call(
            lambda: self.aio.instances(
                include_foreign=include_foreign,
                probe_health=probe_health,
                measure_cpu=measure_cpu,
                names=names,
            )
        )
        return result

    def records(self) -> list[InstanceRecord]:
        result: list[InstanceRecord] = self._call(self.aio.records)
        return result

    def resolve(self, ref: str) -> InstanceRecord:
        result: InstanceRecord = self._call(lambda: self.aio.resolve(ref))
        return result

    def info(self, ref: str) -> InstanceInfo:
        result: InstanceInfo = self._call(lambda: self.aio.info(ref))
        return result

    def status(self, ref: str) -> StatusReport:
        result: StatusReport = self._call(lambda: self.aio.status(ref))
        return result

    def env(self, ref: str) -> dict[str, str]:
        result: dict[str, str] = self._call(lambda: self.aio.env(ref))
        return result

    def events(
        self, ref: str | None = None, *, limit: int | None = None, after: int | None = None
    ) -> list[LifecycleEvent]:
        result: list[LifecycleEvent] = self._call(
            lambda: self.aio.events(ref, limit=limit, after=after)
        )
        return result

    def samples(self, ref: str, *, since: float | None = None) -> list[ResourceSample]:
        result: list[ResourceSample] = self._call(lambda: self.aio.samples(ref, since=since))
        return result

    def logs(
        self,
        refs: Sequence[str],
        *,
        lines: int = 50,
        pattern: str | None = None,
        level: str | None = None,
    ) -> list[LogLine]:
        result: list[LogLine] = self._call(
            lambda: self.aio.logs(refs, lines=lines, pattern=pattern, level=level)
        )
        return result

    def follow_logs(
        self,
        refs: Sequence[str],
        *,
        lines: int = 0,
        pattern: str | None = None,
        level: str | None = None,
    ) -> Iterator[LogLine]:
        return self._portal.iterate(
            lambda: self.aio.follow_logs(refs, lines=lines, pattern=pattern, level=level)
        )

    # -- tasks -----------------------------------------------------------------------------
    def run(
        self,
        prompt: str,
        options: TaskOptions | None = None,
        *,
        observer: Observer | None = None,
        detach: bool = False,
    ) -> TaskRecord:
        result: TaskRecord = self._call(
            lambda: self.aio.run(prompt, options, observer=observer, detach=detach)
        )
        return result

    def wait(
        self, task_id: str, *, timeout: float | None = None, observer: Observer | None = None
    ) -> TaskRecord:
        result: TaskRecord = self._call(
            lambda: self.aio.wait(task_id, timeout=timeout, observer=observer)
        )
        return result

    def task(self, task_id: str) -> TaskRecord:
        result: TaskRecord = self._call(lambda: self.aio.task(task_id))
        return result

    def tasks(
        self, *, batch_id: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[TaskRecord]:
        result: list[TaskRecord] = self._call(
            lambda: self.aio.tasks(batch_id=batch_id, status=status, limit=limit)
        )
        return result

    # -- batches ---------------------------------------------------------------------------
    def batch_create(
        self,
        tasks: Sequence[BatchTask] | str,
        options: BatchOptions | None = None,
        *,
        source: str | None = None,
    ) -> BatchSummary:
        result: BatchSummary = self._call(
            lambda: self.aio.batch_create(tasks, options, source=source)
        )
        return result

    def batch_run(self, batch_id: str, *, listener: Listener | None = None) -> BatchSummary:
        result: BatchSummary = self._call(lambda: self.aio.batch_run(batch_id, listener=listener))
        return result

    def batch(
        self,
        tasks: Sequence[BatchTask] | str,
        options: BatchOptions | None = None,
        *,
        source: str | None = None,
        listener: Listener | None = None,
    ) -> BatchSummary:
        result: BatchSummary = self._call(
            lambda: self.aio.batch(tasks, options, source=source, listener=listener)
        )
        return result

    def batch_resume(
        self,
        batch_id: str,
        *,
        listener: Listener | None = None,
        requeue_cancelled: bool = False,
    ) -> BatchSummary:
        result: BatchSummary = self._call(
            lambda: self.aio.batch_resume(
                batch_id, listener=listener, requeue_cancelled=requeue_cancelled
            )
        )
        return result

    def batches(self, *, limit: int | None = None) -> list[BatchSummary]:
        result: list[BatchSummary] = self._call(lambda: self.aio.batches(limit=limit))
        return result

    def count_batches(self) -> int:
        result: int = self._call(self.aio.count_batches)
        return result

    def batch_show(self, batch_id: str) -> BatchSummary:
        result: BatchSummary = self._call(lambda: self.aio.batch_show(batch_id))
        return result

    def known_ids(self, kind: str) -> list[str]:
        result: list[str] = self._call(lambda: self.aio.known_ids(kind))
        return result

    def count_tasks(self, *, batch_id: str | None = None, status: str | None = None) -> int:
        result: int = self._call(lambda: self.aio.count_tasks(batch_id=batch_id, status=status))
        return result

    def batch_remove(self, batch_ids: Sequence[str]) -> dict[str, int]:
        result: dict[str, int] = self._call(lambda: self.aio.batch_remove(batch_ids))
        return result

    def worktrees(self) -> list[WorktreeRow]:
        result: list[WorktreeRow] = self._call(self.aio.worktrees)
        return result

    def worktree_remove(
        self, task_ids: Sequence[str] = (), *, merged: bool = False,
        older_than: float | None = None, force: bool = False,
    ) -> WorktreeRemoval:  # fmt: skip
        result: WorktreeRemoval = self._call(
            lambda: self.aio.worktree_remove(
                task_ids, merged=merged, older_than=older_than, force=force
            )
        )
        return result

    def task_patch(self, task_id: str) -> str:
        result: str = self._call(lambda: self.aio.task_patch(task_id))
        return result

    def prune_results(self, older_than: float, *, dry_run: bool = False) -> PruneReport:
        result: PruneReport = self._call(
            lambda: self.aio.prune_results(older_than, dry_run=dry_run)
        )
        return result

    def batch_cancel(self, batch_id: str) -> BatchSummary:
        result: BatchSummary = self._call(lambda: self.aio.batch_cancel(batch_id))
        return result

    # -- sessions --------------------------------------------------------------------------
    def sessions(self, ref: str | None = None) -> list[SessionRow]:
        result: list[SessionRow] = self._call(lambda: self.aio.sessions(ref))
        return result

    def session(self, session_id: str, ref: str | None = None) -> SessionRow:
        result: SessionRow = self._call(lambda: self.aio.session(session_id, ref))
        return result

    def session_messages(self, session_id: str, ref: str | None = None) -> list[Message]:
        result: list[Message] = self._call(lambda: self.aio.session_messages(session_id, ref))
        return result

    def session_todo(self, session_id: str, ref: str | None = None) -> list[Any]:
        result: list[Any] = self._call(lambda: self.aio.session_todo(session_id, ref))
        return result

    def session_diff(self, session_id: str, ref: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(lambda: self.aio.session_diff(session_id, ref))
        return result

    def abort_session(self, session_id: str, ref: str | None = None) -> str:
        result: str = self._call(lambda: self.aio.abort_session(session_id, ref))
        return result

    def remove_session(self, session_id: str, ref: str | None = None) -> str:
        result: str = self._call(lambda: self.aio.remove_session(session_id, ref))
        return result

    def session_asks(self, session_id: str, ref: str | None = None) -> list[PendingAsk]:
        result: list[PendingAsk] = self._call(lambda: self.aio.session_asks(session_id, ref))
        return result

    def reply_permission(
        self,
        session_id: str,
        ask_id: str,
        reply: str,
        *,
        message: str | None = None,
        ref: str | None = None,
    ) -> PendingAsk:
        result: PendingAsk = self._call(
            lambda: self.aio.reply_permission(session_id, ask_id, reply, message=message, ref=ref)
        )
        return result

    def answer_question(
        self,
        session_id: str,
        ask_id: str,
        answers: list[list[str]] | None,
        *,
        ref: str | None = None,
    ) -> PendingAsk:
        result: PendingAsk = self._call(
            lambda: self.aio.answer_question(session_id, ask_id, answers, ref=ref)
        )
        return result

    def api(
        self,
        ref: str,
        method: str,
        path: str,
        data: str | None = None,
        directory: str | None = None,
    ) -> Any:
        return self._call(lambda: self.aio.api(ref, method, path, data, directory))

    def attach_command(
        self, ref: str, *, session_id: str | None = None, directory: str | None = None
    ) -> tuple[list[str], dict[str, str]]:
        result: tuple[list[str], dict[str, str]] = self._call(
            lambda: self.aio.attach_command(ref, session_id=session_id, directory=directory)
        )
        return result

    # -- observe ---------------------------------------------------------------------------
    def monitor(self, refs: Sequence[str] = (), *, follow_new: bool = False) -> Iterator[Received]:
        return self._portal.iterate(lambda: self.aio.monitor(refs, follow_new=follow_new))

    def top(self) -> FleetFrame:
        result: FleetFrame = self._call(self.aio.top)
        return result

    def task_totals(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self.aio.task_totals)
        return result

    def metrics(self) -> str:
        result: str = self._call(self.aio.metrics)
        return result

    def serve_metrics(
        self, host: str, port: int, *, ready: Callable[[str], None] | None = None
    ) -> None:
        """Blocks until interrupted."""
        self._call(lambda: self.aio.serve_metrics(host, port, ready=ready))

    # -- the tool itself -------------------------------------------------------------------
    def doctor(self) -> list[Check]:
        result: list[Check] = self._call(self.aio.doctor)
        return result

    def project_checks(self, refs: Sequence[str], *, mcp: bool = True) -> list[Check]:
        result: list[Check] = self._call(lambda: self.aio.project_checks(refs, mcp=mcp))
        return result

    def install(self, version: str = PINNED_OPENCODE_VERSION) -> Binary:
        result: Binary = self._call(lambda: self.aio.install(version))
        return result

    def demo(self, *, count: int = 3, say: Callable[[str], None] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call(lambda: self.aio.demo(count=count, say=say))
        return result

    # -- provider limits -------------------------------------------------------------------
    def limits(self) -> list[LimitStatus]:
        result: list[LimitStatus] = self._call(self.aio.limits)
        return result

    def limit_set(
        self, scope: str, *, concurrency: int | None = None, rpm: int | None = None
    ) -> Limit:
        result: Limit = self._call(
            lambda: self.aio.limit_set(scope, concurrency=concurrency, rpm=rpm)
        )
        return result

    def limit_remove(self, scopes: Sequence[str]) -> list[str]:
        result: list[str] = self._call(lambda: self.aio.limit_remove(scopes))
        return result
