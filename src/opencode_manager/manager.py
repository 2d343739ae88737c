"""The facade: a Python API for everything the CLI does with instances.

from opencode_manager import Manager
with Manager() as ocm:
    [info] = ocm.start(count=1)
    print(info.url, ocm.env(info.name))
    ocm.stop([info.name])
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psutil

from . import process
from .client.endpoint import Endpoint
from .errors import ConflictError, NotFoundError, OcmError, StartError, UsageError
from .instances import binary as binaries
from .instances import credentials, launch, ports
from .instances import spec as specs
from .instances.discovery import ForeignServer, find_foreign
from .models import DEFAULT_USERNAME, InstanceInfo, InstanceRecord, InstanceSpec, State, TaskRecord
from .registry import Registry
from .settings import Settings

if TYPE_CHECKING:
    from .client.types import Message, Session
    from .tasks.dispatch import TaskOptions
    from .tasks.runner import Observer
    from .tasks.sessions import SessionRow
    from .tasks.store import TaskStore

DEFAULT_START_TIMEOUT = 120.0
DEFAULT_STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 15

#: Called with (instance name, phase) while starting: "spawned", "running", "failed".
StartProgress = Callable[[str, str], None]


@dataclass
class StopResult:
    name: str
    was: str
    status: str
    via: str = "keeper"  # who ended the server: its keeper, or ocm directly (no keeper)
    signalled: int = 0
    killed: int = 0
    port_freed: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CleanupReport:
    removed_instances: list[str] = field(default_factory=list)
    reconciled: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Check:
    """One `ocm doctor` finding."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    level: str = "error"  # or "warning"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Manager:
    """Start, find, inspect and stop OpenCode servers."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self._registry: Registry | None = None

    # -- plumbing --------------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self.settings.ensure_home()
            self._registry = Registry(self.settings.registry_path)
        return self._registry

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    def __enter__(self) -> Manager:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def endpoint(self, record: InstanceRecord) -> Endpoint | None:
        if not record.url:
            return None
        password = self._password(record)
        return Endpoint(url=record.url, password=password, name=record.name)

    def _password(self, record: InstanceRecord) -> str | None:
        if not record.spec.auth:
            return None
        return credentials.read_password(self.settings, record.name)

    # -- start -----------------------------------------------------------------------------
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
    ) -> list[InstanceInfo]:
        """Start instances in parallel; return once all are healthy, or raise StartError."""
        requested = specs.build_specs(
            name=name,
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
        )
        binary = binaries.find_binary(self.settings)
        if port is not None and not ports.port_free(hostname, port):
            raise ConflictError(f"port {port} is already in use on {hostname}; pick another")
        placed = self._reserve(requested, binary.path)
        for spec in placed:
            self._launch(spec)
            if progress:
                progress(spec.name, "spawned")
        return self._await_started([s.name for s in placed], timeout, progress)

    def _reserve(self, requested: list[InstanceSpec], binary: str) -> list[InstanceSpec]:
        """Name, place and record the instances in one transaction (the cross-process lock)."""
        placed: list[InstanceSpec] = []
        with self.registry.transaction() as db:
            taken = self.registry.names(db)
            generated = iter(
                specs.next_generated_names(taken, sum(1 for s in requested if not s.name))
            )
            claimed = self.registry.claimed_ports(db)
            for spec in requested:
                final = InstanceSpec(
                    **{**spec.__dict__, "name": spec.name or next(generated), "opencode": binary}
                )
                chosen: int | None = final.port
                if final.port_range is not None:
                    low, high = final.port_range
                    chosen = ports.choose_port(
                        low, high, claimed, is_free=_binds_on(final.hostname)
                    )
                elif chosen is not None and chosen in claimed:
                    raise ConflictError(f"port {chosen} is already used by another instance")
                if chosen is not None:
                    claimed.add(chosen)
                self.registry.insert(db, final, port=chosen)
                placed.append(final)
        # Secrets and dirs after the rows exist, so a failure leaves a record to clean up.
        for spec in placed:
            self._prepare(spec)
        return placed

    def _prepare(self, spec: InstanceSpec) -> None:
        try:
            launch.prepare_dirs(
                self.settings.instance_dir(spec.name), self.settings.user_data_home, spec
            )
            if spec.auth and credentials.read_password(self.settings, spec.name) is None:
                credentials.write_password(
                    self.settings, spec.name, credentials.generate_password()
                )
        except (OSError, OcmError) as exc:
            self.registry.update(spec.name, state=State.CRASHED, error=str(exc))
            raise

    def _launch(self, spec: InstanceSpec) -> None:
        """Spawn the detached keeper that runs and supervises the server."""
        log_path = self.settings.log_path(spec.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(self.settings.environ)
        env["OCM_HOME"] = str(self.settings.home)
        with open(log_path, "ab") as log:
            keeper = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "opencode_manager.keeper",
                    "--home",
                    str(self.settings.home),
                    spec.name,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=spec.dir,
                env=env,
                start_new_session=True,  # outlives this terminal and this process
                close_fds=True,
            )
        identity = process.identity_of(keeper.pid)
        self.registry.update(
            spec.name,
            keeper_pid=keeper.pid,
            keeper_ctime=identity.create_time if identity else None,
        )
        # The keeper is detached; never wait for it, and don't warn that we didn't.
        keeper.returncode = 0

    def _await_started(
        self, names: list[str], timeout: float, progress: StartProgress | None
    ) -> list[InstanceInfo]:
        deadline = time.monotonic() + timeout
        pending = set(names)
        failures: list[InstanceRecord] = []
        delay = 0.02
        while pending:
            for name in sorted(pending):
                record = self.registry.get(name)
                if record.state is State.RUNNING:
                    pending.discard(name)
                    if progress:
                        progress(name, "running")
                elif record.state in (State.CRASHED, State.STOPPED, State.ERRORED) or (
                    record.state is State.STARTING
                    and not process.is_alive(record.keeper)
                    and not process.is_alive(record.server)
                ):
                    pending.discard(name)
                    failures.append(record)
                    if progress:
                        progress(name, "failed")
            if not pending:
                break
            if time.monotonic() > deadline:
                for name in sorted(pending):
                    self._stop_record(self.registry.get(name), DEFAULT_STOP_TIMEOUT)
                    self.registry.update(
                        name,
                        state=State.CRASHED,
                        error=f"not healthy within {timeout:.0f} s; stopped",
                    )
                    failures.append(self.registry.get(name))
                break
            time.sleep(delay)  # polling the registry with a deadline
            delay = min(delay * 1.2, 0.05)  # a cheap local read: keep the added latency small
        if failures:
            raise self._start_error(failures, len(names))
        # Just started: a CPU reading would only measure the start itself, so skip the window.
        by_name = {
            info.name: info
            for info in self.instances(include_foreign=False, measure_cpu=False, names=names)
        }
        return [by_name[name] for name in names]

    def _start_error(self, failures: list[InstanceRecord], total: int) -> StartError:
        first = failures[0]
        if first.state is State.STARTING:
            reason = "its keeper died before the server started"
        else:
            reason = first.error or "the server exited during start"
        tail = self.log_tail(first.name, LOG_TAIL_LINES)
        others = f" ({len(failures)} of {total} failed)" if total > 1 else ""
        return StartError(
            f"{first.name} failed to start: {reason}{others}; see `ocm logs {first.name}`",
            instance=first.name,
            log_tail=tail,
        )

    # -- find ------------------------------------------------------------------------------
    def records(self) -> list[InstanceRecord]:
        return self.registry.instances()

    def instances(
        self,
        *,
        include_foreign: bool = True,
        probe_health: bool = True,
        measure_cpu: bool = True,
        names: Collection[str] | None = None,
    ) -> list[InstanceInfo]:
        """Every managed instance (reconciled with what runs) and every foreign server.

        CPU use comes from the keepers' samples; servers without a fresh sample are measured
        over a 0.1 s window unless `measure_cpu` is off (their CPU is then None).
        """
        from .instances.inventory import list_instances

        return list_instances(
            self,
            include_foreign=include_foreign,
            probe_health=probe_health,
            measure_cpu=measure_cpu,
            names=names,
        )

    def resolve(self, ref: str) -> InstanceRecord:
        """A managed instance by name, port or URL; foreign servers are refused by name."""
        found = self._resolve(ref)
        if isinstance(found, ForeignServer):
            raise ConflictError(
                f"{ref} is an OpenCode server ocm did not start (pid {found.pid}); "
                "ocm only acts on instances it manages"
            )
        return found

    def _resolve(self, ref: str) -> InstanceRecord | ForeignServer:
        ref = ref.strip()
        if not ref:
            raise UsageError("empty instance reference")
        record = self.registry.find(ref)
        if record is not None:
            return record
        port: int | None = None
        if ref.isdigit():
            port = specs.parse_port(ref)
        elif "://" in ref:
            port = launch.port_of(ref)
            if port is None:
                raise UsageError(f"invalid instance URL {ref!r}: no port in it")
        if port is not None:
            matches = [r for r in self.registry.instances() if r.port == port]
            live = [
                r for r in matches if r.state in (State.RUNNING, State.STARTING, State.STOPPING)
            ]
            if live or matches:
                return (live or matches)[-1]
            for f in find_foreign(set()):
                if f.port == port:
                    return f
            raise NotFoundError(f"no instance on port {port}; see `ocm ls`")
        raise NotFoundError(f"no instance named {ref!r}; see `ocm ls`", instance=ref)

    def info(self, ref: str) -> InstanceInfo:
        found = self._resolve(ref)
        name = found.name if isinstance(found, InstanceRecord) else f"foreign:{found.port}"
        foreign = isinstance(found, ForeignServer)
        for info in self.instances(include_foreign=foreign, names=() if foreign else (name,)):
            if info.name == name:
                return info
        raise NotFoundError(f"{ref} vanished while looking at it")

    def status(self, ref: str) -> dict[str, Any]:
        """The detailed report: process tree, memory, connections, sessions, MCP, LSP, errors."""
        from .instances.inventory import status_report

        return status_report(self, ref)

    def env(self, ref: str) -> dict[str, str]:
        """Variables that let OpenCode's own CLI, curl and SDKs reach the instance."""
        record = self.resolve(ref)
        if not record.url:
            raise ConflictError(f"{record.name} has no URL yet (status {record.state.value})")
        out = {"OPENCODE_SERVER_URL": record.url, "OPENCODE_SERVER_USERNAME": DEFAULT_USERNAME}
        password = self._password(record)
        if password:
            out["OPENCODE_SERVER_PASSWORD"] = password
        return out

    # -- stop ------------------------------------------------------------------------------
    def stop(
        self, refs: Sequence[str] = (), *, all: bool = False, timeout: float = DEFAULT_STOP_TIMEOUT
    ) -> list[StopResult]:
        """Stop instances gracefully and completely; only processes proven to be ours."""
        if timeout <= 0:
            raise UsageError(f"invalid --timeout {timeout}: must be above 0")
        if all and refs:
            raise UsageError("give instance names or --all, not both")
        if not all and not refs:
            raise UsageError("which instances? give names, ports or URLs, or --all")
        if all:
            targets = [r for r in self.registry.instances() if self._is_live(r)]
        else:
            targets = _unique([self.resolve(ref) for ref in refs])
            for record in targets:
                if not self._is_live(record):
                    raise ConflictError(
                        f"{record.name} is not running (status {record.state.value}); "
                        "nothing to stop",
                        instance=record.name,
                    )
        results = []
        for record in targets:
            results.append(self._stop_record(record, timeout))
        return results

    def _is_live(self, record: InstanceRecord) -> bool:
        return process.is_alive(record.keeper) or process.is_alive(record.server)

    def _stop_record(self, record: InstanceRecord, timeout: float) -> StopResult:
        was = record.state.value
        keeper = process.verified(record.keeper)
        result = StopResult(name=record.name, was=was, status="stopped")
        if keeper is not None:
            # The keeper owns the graceful path (dispose, group, descendants, orphans).
            with contextlib.suppress(psutil.Error):
                keeper.send_signal(signal.SIGTERM)
            process.wait_gone([keeper], timeout + 10.0)
        server = process.verified(record.server)
        if server is not None:
            # No keeper (killed, or stuck): do it ourselves.
            endpoint = self.endpoint(record)
            if endpoint is not None:
                from .client import healthcheck

                with contextlib.suppress(OcmError):
                    asyncio.run(healthcheck.dispose(endpoint, timeout=3.0))
            term = process.terminate_tree(server, timeout=timeout)
            result.via = "ocm"
            result.signalled, result.killed = term.signalled, term.killed
        leftover = process.verified(record.keeper)
        if leftover is not None:
            term = process.terminate_tree(leftover, timeout=timeout)
            result.killed += term.killed
        with self.registry.transaction() as db:
            current = self.registry.find(record.name)
            fields: dict[str, Any] = {
                "keeper_pid": None,
                "keeper_ctime": None,
                "server_pid": None,
                "server_ctime": None,
            }
            if current is None or current.state is not State.STOPPED:
                fields.update(state=State.STOPPED, stopped_at=time.time(), last_exit="stopped")
            self.registry.update_in(db, record.name, **fields)
        if record.port:
            result.port_freed = _wait_port_free(record.spec.hostname, record.port, 5.0)
        return result

    def restart(
        self,
        refs: Sequence[str],
        *,
        timeout: float = DEFAULT_START_TIMEOUT,
        progress: StartProgress | None = None,
    ) -> list[InstanceInfo]:
        """Stop (if running) and start again with the same name, spec, password and data."""
        if not refs:
            raise UsageError("which instances? give names, ports or URLs")
        records = _unique([self.resolve(ref) for ref in refs])
        binary = binaries.find_binary(self.settings)
        for record in records:
            if self._is_live(record):
                self._stop_record(record, DEFAULT_STOP_TIMEOUT)
        names = []
        for record in records:
            spec = InstanceSpec(**{**record.spec.__dict__, "opencode": binary.path})
            with self.registry.transaction() as db:
                chosen = spec.port
                if spec.port_range is not None:
                    claimed = self.registry.claimed_ports(db)
                    chosen = ports.choose_port(
                        *spec.port_range, claimed, is_free=_binds_on(spec.hostname)
                    )
                self.registry.update_in(
                    db,
                    record.name,
                    spec=spec,
                    state=State.STARTING,
                    port=chosen,
                    url=None,
                    error=None,
                    restarts=record.restarts + 1,
                    stopped_at=None,
                )
            self._prepare(spec)
            self._launch(spec)
            names.append(record.name)
            if progress:
                progress(record.name, "spawned")
        return self._await_started(names, timeout, progress)

    def remove(self, refs: Sequence[str], *, force: bool = False) -> list[str]:
        """Forget stopped instances: their record, password and private data (not their log)."""
        if not refs:
            raise UsageError("which instances? give names, ports or URLs")
        records = _unique([self.resolve(ref) for ref in refs])
        for record in records:
            if self._is_live(record) and not force:
                raise ConflictError(
                    f"{record.name} is still running; `ocm stop {record.name}` first "
                    "(or use --force)",
                    instance=record.name,
                )
        removed = []
        for record in records:
            if self._is_live(record):
                self._stop_record(record, DEFAULT_STOP_TIMEOUT)
            self._forget(record.name)
            removed.append(record.name)
        return removed

    def _forget(self, name: str) -> None:
        self.registry.delete(name)
        credentials.delete_password(self.settings, name)
        shutil.rmtree(self.settings.instance_dir(name), ignore_errors=True)

    def cleanup(self, *, older_than: float = 0.0, dry_run: bool = False) -> CleanupReport:
        """Forget stopped/crashed instances, reconcile dead ones, delete orphaned logs/dirs."""
        report = CleanupReport(dry_run=dry_run)
        now = time.time()
        for record in self.registry.instances():
            live = self._is_live(record)
            if not live and record.state in (State.RUNNING, State.STARTING, State.STOPPING):
                report.reconciled.append(record.name)
                if not dry_run:
                    self.registry.update(
                        record.name,
                        state=State.CRASHED,
                        error=record.error or "found dead during cleanup",
                        server_pid=None,
                        server_ctime=None,
                        keeper_pid=None,
                        keeper_ctime=None,
                        stopped_at=record.stopped_at or now,
                    )
                record = self.registry.get(record.name) if not dry_run else record
            ended = record.stopped_at or record.updated_at
            if (
                not live
                and (
                    record.state in (State.STOPPED, State.CRASHED, State.ERRORED)
                    or record.name in report.reconciled
                )
                and now - ended >= older_than
            ):
                report.removed_instances.append(record.name)
                if not dry_run:
                    self._forget(record.name)
        known = {r.name for r in self.registry.instances()} - (
            set(report.removed_instances) if dry_run else set()
        )
        for path in sorted(self.settings.logs_dir.glob("*.log*")):
            owner = path.name.split(".log")[0]
            if owner not in known and now - path.stat().st_mtime >= older_than:
                report.removed_files.append(str(path))
                if not dry_run:
                    path.unlink(missing_ok=True)
        if self.settings.instances_dir.is_dir():
            for path in sorted(self.settings.instances_dir.iterdir()):
                if path.name not in known and path.name not in report.removed_instances:
                    report.removed_files.append(str(path))
                    if not dry_run:
                        shutil.rmtree(path, ignore_errors=True)
        return report

    def events(self, ref: str | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Lifecycle events of one instance, or of all, oldest first."""
        name = self.resolve(ref).name if ref else None
        return self.registry.events(name, limit=limit)

    # -- logs ------------------------------------------------------------------------------
    def log_path(self, ref: str) -> str:
        record = self.resolve(ref)
        return str(self.settings.log_path(record.name))

    def log_tail(self, name: str, lines: int) -> list[str]:
        from .instances.logs import tail_across

        return tail_across(self.settings.log_path(name), lines)

    def recent_errors(self, name: str, limit: int = 10) -> list[str]:
        from .instances.logs import is_error, tail_across

        lines = tail_across(self.settings.log_path(name), 500)
        return [ln for ln in lines if is_error(ln)][-limit:]

    # -- tasks -----------------------------------------------------------------------------
    @property
    def store(self) -> TaskStore:
        from .tasks.store import TaskStore

        return TaskStore(self.registry)

    async def arun(
        self,
        prompt: str,
        options: TaskOptions | None = None,
        *,
        observer: Observer | None = None,
        cancel: asyncio.Event | None = None,
        detach: bool = False,
    ) -> TaskRecord:
        """Run a task (async): dispatch over REST, follow it, store and return its record."""
        from .tasks.dispatch import TaskOptions, run_task

        return await run_task(
            self,
            self.store,
            prompt,
            options or TaskOptions(),
            observer=observer,
            cancel=cancel,
            detach=detach,
        )

    def run(
        self,
        prompt: str,
        options: TaskOptions | None = None,
        *,
        observer: Observer | None = None,
        detach: bool = False,
    ) -> TaskRecord:
        """Run a task and return its result record (blocking)."""
        return asyncio.run(self.arun(prompt, options, observer=observer, detach=detach))

    async def await_task(
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
            self, self.store, task_id, timeout=timeout, observer=observer, cancel=cancel
        )

    def wait(self, task_id: str, *, timeout: float | None = None) -> TaskRecord:
        return asyncio.run(self.await_task(task_id, timeout=timeout))

    def task(self, task_id: str) -> TaskRecord:
        """A task's record; a running one is first checked against its server."""
        from .tasks.dispatch import refresh_task

        return asyncio.run(refresh_task(self, self.store, task_id))

    def tasks(self, *, batch_id: str | None = None, status: str | None = None) -> list[TaskRecord]:
        return self.store.list_tasks(batch_id=batch_id, status=status)

    # -- sessions --------------------------------------------------------------------------
    def sessions(self, ref: str | None = None) -> list[SessionRow]:
        from .tasks.sessions import list_sessions

        return list_sessions(self, ref)

    def session(self, session_id: str, ref: str | None = None) -> tuple[InstanceRecord, Session]:
        from .tasks.sessions import find_session

        return find_session(self, session_id, ref)

    def session_messages(self, session_id: str, ref: str | None = None) -> list[Message]:
        from .tasks.sessions import session_messages

        return session_messages(self, session_id, ref)

    def session_todo(self, session_id: str, ref: str | None = None) -> list[Any]:
        from .tasks.sessions import session_todo

        return session_todo(self, session_id, ref)

    def session_diff(self, session_id: str, ref: str | None = None) -> list[dict[str, Any]]:
        from .tasks.sessions import session_diff

        return session_diff(self, session_id, ref)

    def abort_session(self, session_id: str, ref: str | None = None) -> str:
        from .tasks.sessions import abort_session

        return abort_session(self, session_id, ref)

    def remove_session(self, session_id: str, ref: str | None = None) -> str:
        from .tasks.sessions import remove_session

        return remove_session(self, session_id, ref)

    def api(
        self,
        ref: str,
        method: str,
        path: str,
        data: str | None = None,
        directory: str | None = None,
    ) -> Any:
        """Any OpenCode API call on an instance, authenticated (JSON in, JSON out)."""
        from .tasks.sessions import api

        return api(self, ref, method, path, data, directory)

    def attach_command(
        self, ref: str, *, session_id: str | None = None, directory: str | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """argv and environment that run `opencode attach` on an instance."""
        from .tasks.sessions import attach_command

        record = self.resolve(ref)
        binary = binaries.find_binary(self.settings)
        return attach_command(
            self,
            ref,
            binary.path,
            session_id=session_id,
            directory=directory,
            password=self._password(record),
        )

    # -- doctor ----------------------------------------------------------------------------
    def doctor(self) -> list[Check]:
        from .instances.doctor import run_checks

        return run_checks(self)


def _binds_on(host: str) -> Callable[[int], bool]:
    def is_free(port: int) -> bool:
        return ports.port_free(host, port)

    return is_free


def _unique(records: list[InstanceRecord]) -> list[InstanceRecord]:
    seen: dict[str, InstanceRecord] = {}
    for record in records:
        seen.setdefault(record.name, record)
    return list(seen.values())


def _wait_port_free(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if ports.port_free(host, port):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling with a deadline
