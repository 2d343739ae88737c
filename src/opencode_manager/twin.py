"""`Manager`: the blocking twin of `AsyncManager`, usable from any thread (also one whose
event loop is running: a Jupyter cell, a FastAPI handler).

Generated from manager.py by scripts/twin.py: do not edit (tests/test_twins.py fails when it
is stale). Every method is `AsyncManager`'s, with the same parameters, run on a private event
loop in a thread of its own (anyio's blocking portal, via `portal.Portal`); `cancel` is left
out: an interrupt (Ctrl-C) while a call waits cancels it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .manager import AsyncManager
from .models import DEFAULT_USERNAME
from .portal import Portal
from .settings import PINNED_OPENCODE_VERSION
from .supervision import DEFAULT_START_TIMEOUT as DEFAULT_START_TIMEOUT
from .supervision import DEFAULT_STOP_TIMEOUT as DEFAULT_STOP_TIMEOUT

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import httpx

    from .client.types import Message
    from .cluster.link import ClusterReport
    from .instances import spec as specs
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
    from .models import InstanceInfo, InstanceRecord, LifecycleEvent, ResourceSample, TaskRecord
    from .observe.fleetview import FleetFrame
    from .observe.monitor import Received
    from .settings import Settings
    from .tasks.batch import BatchOptions, Listener
    from .tasks.batchfile import BatchTask
    from .tasks.dispatch import TaskOptions
    from .tasks.runner import Checkpoint, Observer
    from .tasks.sessions import PendingAsk, SessionRow
    from .tasks.store import PruneReport, TaskStore
    from .tasks.summary import BatchSummary
    from .tasks.worktree import WorktreeRemoval, WorktreeRow

T = TypeVar("T")


class Manager:
    """The sync twin of `AsyncManager`: the same methods, blocking, usable from any thread
    (also while an event loop runs in it)."""

    def __init__(
        self, settings: Settings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.aio = AsyncManager(settings, transport=transport)
        self.settings = self.aio.settings
        self._portal = Portal()

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
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

    @property
    def store(self) -> TaskStore:
        return self.aio.store

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
        return self._call(
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

    def stop(
        self, refs: Sequence[str] = (), *, all: bool = False, timeout: float = DEFAULT_STOP_TIMEOUT
    ) -> list[StopResult]:
        return self._call(lambda: self.aio.stop(refs, all=all, timeout=timeout))

    def start_existing(
        self,
        refs: Sequence[str],
        *,
        timeout: float = DEFAULT_START_TIMEOUT,
        progress: StartProgress | None = None,
    ) -> list[InstanceInfo]:
        return self._call(lambda: self.aio.start_existing(refs, timeout=timeout, progress=progress))

    def restart(
        self,
        refs: Sequence[str] = (),
        *,
        all: bool = False,
        timeout: float = DEFAULT_START_TIMEOUT,
        progress: StartProgress | None = None,
    ) -> list[InstanceInfo]:
        return self._call(
            lambda: self.aio.restart(refs, all=all, timeout=timeout, progress=progress)
        )

    def fleet_diff(self, path: str | None = None, *, force_recreate: bool = False) -> UpReport:
        return self._call(lambda: self.aio.fleet_diff(path, force_recreate=force_recreate))

    def up(
        self,
        path: str | None = None,
        *,
        recreate: bool = True,
        force_recreate: bool = False,
        remove_orphans: bool = False,
        timeout: float = DEFAULT_START_TIMEOUT,
    ) -> UpReport:
        return self._call(
            lambda: self.aio.up(
                path,
                recreate=recreate,
                force_recreate=force_recreate,
                remove_orphans=remove_orphans,
                timeout=timeout,
            )
        )

    def down(self, path: str | None = None) -> list[StopResult]:
        return self._call(lambda: self.aio.down(path))

    def save(self, *, force: bool = False) -> SaveReport:
        return self._call(lambda: self.aio.save(force=force))

    def resurrect(self, *, timeout: float = DEFAULT_START_TIMEOUT) -> ResurrectReport:
        return self._call(lambda: self.aio.resurrect(timeout=timeout))

    def backups(self) -> list[Backup]:
        return self._call(self.aio.backups)

    def restore(self, backup: str | None = None, *, force: bool = False) -> RestoreReport:
        return self._call(lambda: self.aio.restore(backup, force=force))

    def export_systemd(
        self,
        refs: Sequence[str] = (),
        *,
        all: bool = False,
        fleet_file: str | None = None,
        directory: str | None = None,
    ) -> SystemdExport:
        return self._call(
            lambda: self.aio.export_systemd(
                refs, all=all, fleet_file=fleet_file, directory=directory
            )
        )

    def remove(self, refs: Sequence[str], *, force: bool = False) -> list[str]:
        return self._call(lambda: self.aio.remove(refs, force=force))

    def cluster_up(self, address: str | None = None) -> ClusterReport:
        return self._call(lambda: self.aio.cluster_up(address))

    def cluster_hosts(self) -> ClusterReport:
        return self._call(self.aio.cluster_hosts)

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
        return self._call(
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

    def cluster_down(self, *, timeout: float = DEFAULT_STOP_TIMEOUT) -> ClusterReport:
        return self._call(lambda: self.aio.cluster_down(timeout=timeout))

    def remote_add(
        self, name: str, url: str, *, username: str = DEFAULT_USERNAME, password: str | None = None
    ) -> InstanceInfo:
        return self._call(
            lambda: self.aio.remote_add(name, url, username=username, password=password)
        )

    def remote_remove(self, names: Sequence[str]) -> list[str]:
        return self._call(lambda: self.aio.remote_remove(names))

    def cleanup(
        self, *, older_than: float = 0.0, dry_run: bool = False, force: bool = False
    ) -> CleanupReport:
        return self._call(
            lambda: self.aio.cleanup(older_than=older_than, dry_run=dry_run, force=force)
        )

    def instances(
        self,
        *,
        include_foreign: bool = True,
        probe_health: bool = True,
        measure_cpu: bool = True,
        names: Sequence[str] | None = None,
    ) -> list[InstanceInfo]:
        return self._call(
            lambda: self.aio.instances(
                include_foreign=include_foreign,
                probe_health=probe_health,
                measure_cpu=measure_cpu,
                names=names,
            )
        )

    def records(self) -> list[InstanceRecord]:
        return self._call(self.aio.records)

    def resolve(self, ref: str) -> InstanceRecord:
        return self._call(lambda: self.aio.resolve(ref))

    def info(self, ref: str) -> InstanceInfo:
        return self._call(lambda: self.aio.info(ref))

    def status(self, ref: str) -> StatusReport:
        return self._call(lambda: self.aio.status(ref))

    def env(self, ref: str) -> dict[str, str]:
        return self._call(lambda: self.aio.env(ref))

    def events(
        self, ref: str | None = None, *, limit: int | None = None, after: int | None = None
    ) -> list[LifecycleEvent]:
        return self._call(lambda: self.aio.events(ref, limit=limit, after=after))

    def samples(self, ref: str, *, since: float | None = None) -> list[ResourceSample]:
        return self._call(lambda: self.aio.samples(ref, since=since))

    def logs(
        self,
        refs: Sequence[str],
        *,
        lines: int = 50,
        pattern: str | None = None,
        level: str | None = None,
    ) -> list[LogLine]:
        return self._call(lambda: self.aio.logs(refs, lines=lines, pattern=pattern, level=level))

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

    def run(
        self,
        prompt: str,
        options: TaskOptions | None = None,
        *,
        observer: Observer | None = None,
        detach: bool = False,
        checkpoint: Checkpoint | None = None,
    ) -> TaskRecord:
        return self._call(
            lambda: self.aio.run(
                prompt, options, observer=observer, detach=detach, checkpoint=checkpoint
            )
        )

    def wait(
        self, task_id: str, *, timeout: float | None = None, observer: Observer | None = None
    ) -> TaskRecord:
        return self._call(lambda: self.aio.wait(task_id, timeout=timeout, observer=observer))

    def task(self, task_id: str) -> TaskRecord:
        return self._call(lambda: self.aio.task(task_id))

    def tasks(
        self, *, batch_id: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[TaskRecord]:
        return self._call(lambda: self.aio.tasks(batch_id=batch_id, status=status, limit=limit))

    def worktrees(self) -> list[WorktreeRow]:
        return self._call(self.aio.worktrees)

    def worktree_remove(
        self,
        task_ids: Sequence[str] = (),
        *,
        merged: bool = False,
        older_than: float | None = None,
        force: bool = False,
    ) -> WorktreeRemoval:
        return self._call(
            lambda: self.aio.worktree_remove(
                task_ids, merged=merged, older_than=older_than, force=force
            )
        )

    def task_patch(self, task_id: str) -> str:
        return self._call(lambda: self.aio.task_patch(task_id))

    def prune_results(self, older_than: float, *, dry_run: bool = False) -> PruneReport:
        return self._call(lambda: self.aio.prune_results(older_than, dry_run=dry_run))

    def known_ids(self, kind: str) -> list[str]:
        return self._call(lambda: self.aio.known_ids(kind))

    def count_tasks(self, *, batch_id: str | None = None, status: str | None = None) -> int:
        return self._call(lambda: self.aio.count_tasks(batch_id=batch_id, status=status))

    def batch_create(
        self,
        tasks: Sequence[BatchTask] | str,
        options: BatchOptions | None = None,
        *,
        source: str | None = None,
    ) -> BatchSummary:
        return self._call(lambda: self.aio.batch_create(tasks, options, source=source))

    def batch_run(
        self,
        batch_id: str,
        *,
        listener: Listener | None = None,
        checkpoint: Checkpoint | None = None,
        requeue_cancelled: bool = False,
    ) -> BatchSummary:
        return self._call(
            lambda: self.aio.batch_run(
                batch_id,
                listener=listener,
                checkpoint=checkpoint,
                requeue_cancelled=requeue_cancelled,
            )
        )

    def batch(
        self,
        tasks: Sequence[BatchTask] | str,
        options: BatchOptions | None = None,
        *,
        source: str | None = None,
        listener: Listener | None = None,
    ) -> BatchSummary:
        return self._call(lambda: self.aio.batch(tasks, options, source=source, listener=listener))

    def batch_resume(
        self, batch_id: str, *, listener: Listener | None = None, requeue_cancelled: bool = False
    ) -> BatchSummary:
        return self._call(
            lambda: self.aio.batch_resume(
                batch_id, listener=listener, requeue_cancelled=requeue_cancelled
            )
        )

    def batches(self, *, limit: int | None = None) -> list[BatchSummary]:
        return self._call(lambda: self.aio.batches(limit=limit))

    def count_batches(self) -> int:
        return self._call(self.aio.count_batches)

    def batch_show(self, batch_id: str) -> BatchSummary:
        return self._call(lambda: self.aio.batch_show(batch_id))

    def batch_remove(self, batch_ids: Sequence[str]) -> dict[str, int]:
        return self._call(lambda: self.aio.batch_remove(batch_ids))

    def batch_cancel(self, batch_id: str) -> BatchSummary:
        return self._call(lambda: self.aio.batch_cancel(batch_id))

    def sessions(self, ref: str | None = None) -> list[SessionRow]:
        return self._call(lambda: self.aio.sessions(ref))

    def session(self, session_id: str, ref: str | None = None) -> SessionRow:
        return self._call(lambda: self.aio.session(session_id, ref))

    def session_messages(self, session_id: str, ref: str | None = None) -> list[Message]:
        return self._call(lambda: self.aio.session_messages(session_id, ref))

    def session_todo(self, session_id: str, ref: str | None = None) -> list[Any]:
        return self._call(lambda: self.aio.session_todo(session_id, ref))

    def session_diff(self, session_id: str, ref: str | None = None) -> list[dict[str, Any]]:
        return self._call(lambda: self.aio.session_diff(session_id, ref))

    def abort_session(self, session_id: str, ref: str | None = None) -> str:
        return self._call(lambda: self.aio.abort_session(session_id, ref))

    def remove_session(self, session_id: str, ref: str | None = None) -> str:
        return self._call(lambda: self.aio.remove_session(session_id, ref))

    def session_asks(self, session_id: str, ref: str | None = None) -> list[PendingAsk]:
        return self._call(lambda: self.aio.session_asks(session_id, ref))

    def reply_permission(
        self,
        session_id: str,
        ask_id: str,
        reply: str,
        *,
        message: str | None = None,
        ref: str | None = None,
    ) -> PendingAsk:
        return self._call(
            lambda: self.aio.reply_permission(session_id, ask_id, reply, message=message, ref=ref)
        )

    def answer_question(
        self,
        session_id: str,
        ask_id: str,
        answers: list[list[str]] | None,
        *,
        ref: str | None = None,
    ) -> PendingAsk:
        return self._call(lambda: self.aio.answer_question(session_id, ask_id, answers, ref=ref))

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
        return self._call(
            lambda: self.aio.attach_command(ref, session_id=session_id, directory=directory)
        )

    def monitor(self, refs: Sequence[str] = (), *, follow_new: bool = False) -> Iterator[Received]:
        return self._portal.iterate(lambda: self.aio.monitor(refs, follow_new=follow_new))

    def top(self) -> FleetFrame:
        return self._call(self.aio.top)

    def task_totals(self) -> dict[str, Any]:
        return self._call(self.aio.task_totals)

    def metrics(self) -> str:
        return self._call(self.aio.metrics)

    def serve_metrics(
        self, host: str, port: int, *, ready: Callable[[str], None] | None = None
    ) -> None:
        return self._call(lambda: self.aio.serve_metrics(host, port, ready=ready))

    def doctor(self) -> list[Check]:
        return self._call(self.aio.doctor)

    def project_checks(self, refs: Sequence[str], *, mcp: bool = True) -> list[Check]:
        return self._call(lambda: self.aio.project_checks(refs, mcp=mcp))

    def install(self, version: str = PINNED_OPENCODE_VERSION) -> Binary:
        return self._call(lambda: self.aio.install(version))

    def demo(self, *, count: int = 3, say: Callable[[str], None] | None = None) -> dict[str, Any]:
        return self._call(lambda: self.aio.demo(count=count, say=say))

    def limits(self) -> list[LimitStatus]:
        return self._call(self.aio.limits)

    def queue(self) -> list[QueuedTicket]:
        return self._call(self.aio.queue)

    def limit_set(
        self, scope: str, *, concurrency: int | None = None, rpm: int | None = None
    ) -> Limit:
        return self._call(lambda: self.aio.limit_set(scope, concurrency=concurrency, rpm=rpm))

    def limit_remove(self, scopes: Sequence[str]) -> list[str]:
        return self._call(lambda: self.aio.limit_remove(scopes))
