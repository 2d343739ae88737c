"""Starting, stopping, restarting, forgetting and cleaning up instances (blocking; the async
facade runs these in worker threads).

Start: the rows are reserved in one registry transaction (names, ports, and a claim by this
process, so a concurrent `cleanup` or `stop --all` knows the instance is coming up), then one
keeper per instance is launched detached (a double fork: no caller ever has a child to reap),
and we poll the registry until each is healthy or failed.

Stop: the desired state (stopped, with its timeout) is written to the row and the keeper is
woken with SIGTERM; its reconcile loop does the graceful part. A keeper that is gone, frozen or
does not take the request within `KEEPER_ACK` seconds is bypassed: ocm ends the server itself,
then every process that carries the instance's launch marker or that the keeper had adopted.
Only processes proven to be ours (PID, start time, command line, or our random marker) are ever
signalled, and never another instance's tree: a keeper that an agent of this instance started
(`ocm start` in a bash tool, `ocm mcp`) hangs under this instance's keeper, and it and its
server carry their own marker (process.spared).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn, TypeVar

import psutil

from .. import load, process, supervision
from ..errors import (
    ConflictError,
    Interrupted,
    OcmError,
    StartError,
    StateError,
    UsageError,
)
from ..lines import Line, known_line
from ..models import (
    KEEPER_CMD,
    InstanceRecord,
    InstanceSpec,
    Leftover,
    ProcessIdentity,
    State,
    Swept,
    TextEnum,
)
from . import binary as binaries
from . import credentials, launch, ports, remote
from . import spec as specs
from .fleet import Fleet, current_server, is_live, keeper_answering

DEFAULT_START_TIMEOUT = supervision.DEFAULT_START_TIMEOUT
DEFAULT_STOP_TIMEOUT = supervision.DEFAULT_STOP_TIMEOUT
LOG_TAIL_LINES = 15
KEEPER_ACK = 2.0  # a live keeper must take a stop request within this long, or ocm acts
DISPOSE_TIMEOUT = 3.0

#: Called with (instance name, phase) while starting: "spawned", "running", "failed".
StartProgress = Callable[[str, str], None]
T = TypeVar("T")


class StopVia(TextEnum):
    """Who ended the server."""

    KEEPER = "keeper"  # its keeper, on the stop request in its row
    OCM = "ocm"  # ocm itself: no keeper, or one that did not act
    AGENT = "agent"  # the Ray host agent of a cluster instance


@dataclass
class StopResult:
    """What `stop` did to one instance (words from a host agent become the enums)."""

    name: str
    was: State
    status: State
    via: StopVia = StopVia.KEEPER
    signalled: int = 0
    killed: int = 0
    port_freed: bool | None = None

    def __post_init__(self) -> None:
        self.was, self.status, self.via = State(self.was), State(self.status), StopVia(self.via)

    def to_dict(self) -> dict[str, Any]:
        words = {"was": self.was.value, "status": self.status.value, "via": self.via.value}
        return {**asdict(self), **words}


@dataclass
class CleanupReport:
    """What `cleanup` removed (or, with dry_run, would remove)."""

    removed_instances: list[str] = field(default_factory=list)
    reconciled: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)
    dry_run: bool = False
    #: Leftovers holding work (a worktree with uncommitted files or unmerged commits): kept.
    kept: list[Leftover] = field(default_factory=list)
    #: Leftovers holding work that `force` removed anyway (their paths are in removed_files).
    forced: list[Leftover] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def me() -> ProcessIdentity | None:
    return process.identity_of(os.getpid())


# -- start ---------------------------------------------------------------------------------------
def start(
    fleet: Fleet,
    requested: list[InstanceSpec],
    *,
    timeout: float = DEFAULT_START_TIMEOUT,
    progress: StartProgress | None = None,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Start instances in parallel; return their names once all are healthy, or raise.

    Setting `cancel` rolls back: what this call created is stopped and removed, and it
    raises Interrupted."""
    if timeout <= 0:
        raise UsageError(f"invalid --timeout {timeout:g}: must be above 0")
    binary = _binaries(fleet, requested)  # before anything is recorded: a 3.x is refused here
    for spec in requested:
        if spec.port is not None and not ports.port_free(spec.hostname, spec.port):
            raise ConflictError(
                f"port {spec.port} is already in use on {spec.hostname}; pick another"
            )
    placed = _reserve(fleet, requested, binary, timeout)
    names = [s.name for s in placed]
    for spec in placed:
        if _interrupted(cancel):
            _roll_back(fleet, names)
        _launch(fleet, spec)
        if progress:
            progress(spec.name, "spawned")
    return _await_started(fleet, names, timeout, progress, cancel)


async def interruptibly(work: Callable[[threading.Event], T], cancel: asyncio.Event | None) -> T:
    """Run the blocking `work(stop)` (a start: this one, or one on the cluster) in a worker
    thread, so the caller's event loop keeps running.

    Setting `cancel`, or cancelling the awaiting task, sets `stop`: the work rolls back what it
    made and raises Interrupted. A cancelled caller still waits for that roll-back (a thread
    cannot be cancelled, and what it created must not outlive the command), then re-raises."""
    stop = threading.Event()
    job = asyncio.ensure_future(asyncio.to_thread(work, stop))
    asked = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    try:
        await asyncio.wait({job, asked} if asked else {job}, return_when=asyncio.FIRST_COMPLETED)
        if not job.done():
            stop.set()  # the thread rolls back, then raises Interrupted
        return await job
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.shield(job)
        raise
    finally:
        if asked is not None:
            asked.cancel()


def _roll_back(fleet: Fleet, names: list[str]) -> NoReturn:
    """An interrupted start: stop and forget what it created, then say so."""
    undo(fleet, names, remove=names)
    raise Interrupted(f"start interrupted: {', '.join(names)} stopped and removed")


def undo(fleet: Fleet, names: Sequence[str], *, remove: Sequence[str] = ()) -> None:
    """Stop what an interrupted command started, all at once (a Ctrl-C is answered within a
    second or two, not one stop after the other), and forget those in `remove` (the ones it
    created). Best effort: what cannot be stopped stays for `ocm ls` to show."""

    starter = me()

    def one(name: str) -> None:
        with contextlib.suppress(OcmError):
            record = fleet.registry.get(name)
            if record.keeper is None and record.server is None and record.starter == starter:
                # Reserved, never launched: no keeper will come to take a stop request.
                if name not in remove:
                    fleet.registry.mark_stopped(name)
            elif is_live(record):
                _stop_one(fleet, record, DEFAULT_STOP_TIMEOUT)
            if name in remove:
                forget(fleet, name)

    if not names:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        list(pool.map(one, names))


def _interrupted(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


def _binaries(
    fleet: Fleet, requested: Sequence[InstanceSpec]
) -> Callable[[InstanceSpec], binaries.Binary]:
    """Each spec's binary (its own choice, else the resolution order), each choice found and
    version-checked once."""
    found: dict[str | None, binaries.Binary] = {}
    for spec in requested:
        if spec.binary not in found:
            found[spec.binary] = binaries.choose(fleet.settings, spec.binary)
        if not spec.auth and found[spec.binary].line is Line.V2:
            # 2.x makes up a password when given none, and ocm would be locked out.
            raise UsageError(
                f"--no-auth is not possible with OpenCode {found[spec.binary].version}: 2.x "
                "always requires a password (drop --no-auth: ocm generates one and passes it)"
            )
    return lambda spec: found[spec.binary]


def _reserve(
    fleet: Fleet,
    requested: list[InstanceSpec],
    binary: Callable[[InstanceSpec], binaries.Binary],
    timeout: float,
) -> list[InstanceSpec]:
    """Name, place and record the instances in one transaction (the cross-process lock)."""
    registry = fleet.registry
    placed: list[InstanceSpec] = []
    starter = me()
    with registry.transaction() as db:
        taken = registry.names(db)
        unnamed = sum(1 for s in requested if not s.name)
        generated = iter(specs.next_generated_names(taken, unnamed))
        claimed = registry.claimed_ports(db)
        for spec in requested:
            found = binary(spec)
            final = InstanceSpec(
                **{**spec.__dict__, "name": spec.name or next(generated), "opencode": found.path}
            )
            chosen = _choose_port(final, claimed)
            if chosen is not None:
                claimed.add(chosen)
            registry.reserve(
                db, final, port=chosen, starter=starter, start_timeout=timeout,
                token=secrets.token_hex(8), version=found.version,
            )  # fmt: skip
            placed.append(final)
    # Secrets and dirs after the rows exist, so a failure leaves a record to clean up.
    for spec in placed:
        _prepare(fleet, spec)
    return placed


def _choose_port(spec: InstanceSpec, claimed: set[int]) -> int | None:
    if spec.port_range is not None:
        low, high = spec.port_range
        return ports.choose_port(low, high, claimed, is_free=_binds_on(spec.hostname))
    if spec.port is not None and spec.port in claimed:
        raise ConflictError(f"port {spec.port} is already used by another instance")
    return spec.port


def _prepare(fleet: Fleet, spec: InstanceSpec) -> None:
    settings = fleet.settings
    try:
        launch.prepare_dirs(settings.instance_dir(spec.name), settings.user_data_home, spec)
        if spec.auth and credentials.read_password(settings, spec.name) is None:
            credentials.write_password(settings, spec.name, credentials.generate_password())
    except (OSError, OcmError) as exc:
        with contextlib.suppress(OcmError):
            fleet.registry.mark_crashed(spec.name, str(exc))
        if isinstance(exc, OSError):
            raise StateError(f"cannot prepare {spec.name}: {exc.strerror or exc}") from exc
        raise


def _launch(fleet: Fleet, spec: InstanceSpec) -> None:
    """Launch the detached keeper that runs and supervises the server.

    The keeper forks itself away (`--detach`) and the launcher prints its PID and exits, so
    we reap the launcher at once and the keeper is nobody's child: a long-lived caller (a
    dashboard, a notebook) never accumulates zombies.
    """
    settings = fleet.settings
    log_path = settings.log_path(spec.name)
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Launched from an agent's tool (`ocm start` in a bash tool, `ocm mcp`), we inherit that
    # instance's marker: the keeper gets its own instead, so no cleanup of the other instance
    # takes this one's tree for its own.
    env = {k: v for k, v in settings.environ.items() if k != launch.MARK_VARIABLE}
    token = fleet.registry.get(spec.name).launch_token
    if token:
        env[launch.MARK_VARIABLE] = launch.mark_value(spec.name, token)
    env["OCM_HOME"] = str(settings.home)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "opencode_manager.keeper", "--home", str(settings.home),
             "--detach", spec.name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=spec.dir,
            env=env,
            start_new_session=True,  # outlives this terminal and this process
            close_fds=True,
        )  # fmt: skip
    except OSError as exc:
        with contextlib.suppress(OcmError):
            fleet.registry.mark_crashed(spec.name, f"could not run the keeper: {exc}")
        raise StartError(
            f"{spec.name}: could not run the keeper: {exc}", instance=spec.name
        ) from exc
    finally:
        os.close(log)
    assert launcher.stdout is not None
    with launcher.stdout:
        line = launcher.stdout.readline().strip()
    launcher.wait()
    keeper = process.identity_with(int(line), KEEPER_CMD) if line.isdigit() else None
    fleet.registry.mark_launched(spec.name, keeper)


def _await_started(
    fleet: Fleet,
    names: list[str],
    timeout: float,
    progress: StartProgress | None,
    cancel: threading.Event | None = None,
    *,
    relaunched: bool = False,
    verb: str = "restart",
) -> list[str]:
    registry = fleet.registry
    # The keeper enforces the deadline itself; this one only guards against a lost keeper.
    deadline = time.monotonic() + timeout + 5.0
    pending = set(names)
    failures: list[InstanceRecord] = []
    delay = 0.02
    while pending:
        if _interrupted(cancel):
            if relaunched:  # recorded before: stopped again, kept
                undo(fleet, names)
                raise Interrupted(f"{verb} interrupted: {', '.join(names)} stopped")
            _roll_back(fleet, names)
        for name in sorted(pending):
            record = registry.get(name)
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
                _stop_one(fleet, registry.get(name), DEFAULT_STOP_TIMEOUT)
                registry.mark_crashed(name, f"not healthy within {timeout:.0f} s; stopped")
                failures.append(registry.get(name))
            break
        time.sleep(delay)  # polling the registry with a deadline
        delay = min(delay * 1.2, 0.02)  # a cheap local read: keep the added latency small
    for name in names:
        with contextlib.suppress(OcmError):
            registry.release_start(name)
    if failures:
        raise _start_error(fleet, failures, len(names))
    return names


def _start_error(fleet: Fleet, failures: list[InstanceRecord], total: int) -> StartError:
    first = failures[0]
    if first.state is State.STARTING:
        reason = "its keeper died before the server started"
    elif first.state is State.STOPPED:
        reason = "it was stopped while starting (`ocm stop`)"
    else:
        reason = first.error or "the server exited during start"
    if reason.startswith("not healthy within"):  # slow, not broken: say how busy, and what to do
        reason += f" ({load.describe()}; a busy machine needs a longer --timeout)"
    tail = fleet.log_tail(first.name, LOG_TAIL_LINES)
    others = f" ({len(failures)} of {total} failed)" if total > 1 else ""
    return StartError(
        f"{first.name} failed to start: {reason}{others}; see `ocm logs {first.name}`",
        instance=first.name,
        log_tail=tail,
    )


# -- stop ----------------------------------------------------------------------------------------
def stop(
    fleet: Fleet,
    refs: Sequence[str] = (),
    *,
    all: bool = False,
    timeout: float = DEFAULT_STOP_TIMEOUT,
) -> list[StopResult]:
    """Stop instances gracefully and completely; only processes proven to be ours."""
    check_stop(refs, all=all, timeout=timeout)
    if all:
        return [_stop_one(fleet, record, timeout) for record in fleet.records() if is_live(record)]
    return stop_named(fleet, fleet.resolve_all(refs), timeout)


def check_stop(refs: Sequence[str], *, all: bool, timeout: float) -> None:
    """A stop's arguments, checked before any name is looked up."""
    if timeout <= 0:
        raise UsageError(f"invalid --timeout {timeout:g}: must be above 0")
    _names_or_all(refs, all)


def stop_named(fleet: Fleet, records: Sequence[InstanceRecord], timeout: float) -> list[StopResult]:
    """Stop the instances a user named (resolved once, by the caller): a remote one is
    refused, and one that is not running is an error, before anything is stopped."""
    remote.refuse(records, "stop")
    for record in records:
        if not is_live(record):
            was = record.state.value
            if record.state in (State.RUNNING, State.STARTING, State.STOPPING):
                was = "crashed: its processes are gone"  # the record had not caught up
            raise ConflictError(
                f"{record.name} is not running ({was}); nothing to stop",
                instance=record.name,
            )
    return [_stop_one(fleet, record, timeout) for record in records]


def _names_or_all(refs: Sequence[str], all: bool) -> None:
    if all and refs:
        raise UsageError("give instance names or --all, not both")
    if not all and not refs:
        raise UsageError("which instances? give names, ports or URLs, or --all")


def _stop_one(fleet: Fleet, record: InstanceRecord, timeout: float) -> StopResult:
    registry = fleet.registry
    result = StopResult(name=record.name, was=record.state, status=State.STOPPED)
    problem: StateError | None = None
    try:
        record = registry.request_stop(record.name, timeout)
    except StateError as exc:
        problem = exc  # stop anyway; say at the end that it could not be recorded
    keeper = _let_keeper_stop(fleet, record, timeout, recorded=problem is None)
    if problem is None:
        with contextlib.suppress(StateError):
            record = registry.get(record.name)
    spare = _others(record)
    server = current_server(record)
    if server is not None:
        # No keeper, or one that did not act: do it ourselves.
        _dispose(fleet, record, min(DISPOSE_TIMEOUT, timeout))
        strays = _strays(record)
        term = process.terminate_tree(server, timeout=timeout, extra=strays, spare=spare)
        result.via = StopVia.OCM
        result.signalled, result.killed = term.signalled, term.killed
    if keeper is not None and process.is_alive(record.keeper):
        # Frozen or stuck: SIGKILL reaches a stopped process too.
        term = process.terminate_tree(keeper, timeout=min(timeout, 1.0), spare=spare)
        result.killed += term.killed
    strays = _strays(record)
    if strays:  # orphans the keeper had adopted, or tools that escaped the server's tree
        term = process.terminate_tree(strays[0], timeout=timeout, extra=strays[1:], spare=spare)
        result.signalled += term.signalled
        result.killed += term.killed
    try:
        registry.mark_stopped(record.name)
    except StateError as exc:
        problem = problem or exc
    if problem is not None:
        later = (
            "its keeper stays to record it once the registry is writable again"
            if process.is_alive(record.keeper)
            else "`ocm ls` may show it as crashed until the registry is writable again"
        )
        raise StateError(
            f"stopped {record.name}, but the registry could not record it ({problem}); {later}",
            instance=record.name,
        )
    if record.port:
        result.port_freed = _wait_port_free(record.spec.hostname, record.port, 5.0)
    return result


def _let_keeper_stop(
    fleet: Fleet, record: InstanceRecord, timeout: float, *, recorded: bool = True
) -> psutil.Process | None:
    """Wake the keeper and wait for it to stop the server; return it if it did not.

    When the request could not be recorded (`recorded` false: a full disk, a long lock), the
    keeper acts on SIGTERM alone and cannot write that it took it, nor its heartbeat: unless
    frozen, it gets the whole stop to end its server, and once that is gone it is left alone,
    to record the stop when it can (it stays until then). Otherwise a stale heartbeat does not
    make a keeper "not answering" while its server answers health."""
    registry = fleet.registry
    deadline = time.monotonic() + timeout + DISPOSE_TIMEOUT + 5.0
    ack_by = time.monotonic() + min(KEEPER_ACK, timeout + 1.0) if recorded else deadline
    signalled: set[int] = set()
    keeper: psutil.Process | None = None
    serving: bool | None = None  # whether its server answers health, asked once if needed
    while time.monotonic() < deadline:
        with contextlib.suppress(OcmError):
            record = registry.get(record.name)
        keeper = process.verified(record.keeper)
        if keeper is None:
            if record.state is State.STARTING and process.is_alive(record.starter):
                # An `ocm start` is bringing it up: its keeper will see the request.
                time.sleep(0.02)  # polling for the keeper to appear, with a deadline
                continue
            return None
        if keeper.pid not in signalled:
            with contextlib.suppress(psutil.Error):
                keeper.send_signal(signal.SIGTERM)  # wakes its loop: it reads the request
            signalled.add(keeper.pid)
        server = current_server(record)
        if process.is_frozen(keeper):
            return keeper
        if recorded and keeper_answering(record) is False:
            # (Unrecorded, a stale heartbeat says nothing: the keeper cannot write either.)
            if serving is None:
                serving = server is not None and _answers(fleet, record)
            if not serving:
                return keeper
        taken = record.state in (State.STOPPING, State.STOPPED) or server is None
        if not taken and time.monotonic() > ack_by:
            return keeper  # it did not take the request in time
        if process.wait_gone([keeper], 0.05) == []:
            return None
        if server is None and not recorded:
            return None  # ended; the keeper stays until it can record that
    return keeper


def _answers(fleet: Fleet, record: InstanceRecord) -> bool:
    """Its server answers health (a keeper that cannot write its heartbeat still works)."""
    from ..client import healthcheck

    endpoint = fleet.endpoint(record)
    if endpoint is None:
        return False
    try:
        verdict = healthcheck.check_blocking(
            endpoint, timeout=2.0, expected=known_line(record.version)
        )
        return verdict.ready
    except OcmError:
        return False


def _dispose(fleet: Fleet, record: InstanceRecord, timeout: float) -> None:
    """Ask the server to end its tool processes and MCP/LSP servers (bounded). A 2.x server
    has no such route: SIGTERM is its graceful stop (it exits 130)."""
    from ..client import OpencodeClient

    if known_line(record.version) is Line.V2:
        return
    endpoint = fleet.endpoint(record)
    if endpoint is None:
        return
    with contextlib.suppress(OcmError), OpencodeClient(endpoint, timeout=timeout) as client:
        client.dispose()


def _mark(record: InstanceRecord) -> str | None:
    return launch.mark_value(record.name, record.launch_token) if record.launch_token else None


def _others(record: InstanceRecord) -> process.Spare:
    """What a cleanup of this instance must leave alone: keepers (its own is ended on its
    own path) and other instances' trees, which its keeper may have adopted."""
    return process.spared(launch.MARK_VARIABLE, _mark(record))


def _strays(record: InstanceRecord) -> list[psutil.Process]:
    """Live processes of this instance outside the server's tree: adopted orphans, and
    anything that carries its launch marker in its environment (keepers aside: a row written
    before keepers told other instances apart may list one as adopted)."""
    found: dict[int, psutil.Process] = {}
    for ident in record.adopted:
        proc = process.verified(ident)
        if proc is not None:
            found[proc.pid] = proc
    mark = _mark(record)
    if mark:
        for proc in process.marked(launch.MARK_VARIABLE, mark):
            found.setdefault(proc.pid, proc)
    spare = _others(record)
    return [proc for proc in found.values() if not spare(proc)]


# -- restart, remove, cleanup --------------------------------------------------------------------
def check_named(refs: Sequence[str]) -> None:
    """A command that takes names only (start, rm) was given some."""
    if not refs:
        raise UsageError("which instances? give names, ports or URLs")


def start_named(
    fleet: Fleet,
    records: Sequence[InstanceRecord],
    *,
    timeout: float = DEFAULT_START_TIMEOUT,
    progress: StartProgress | None = None,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Start recorded instances that are not running, with their own settings (like `docker
    start`); running ones are left alone. Returns the names started. Setting `cancel` stops
    again what it launched and raises Interrupted."""
    remote.refuse(records, "start")
    idle = [r for r in records if not is_live(r)]
    if not idle:
        return []
    check_restart([r.name for r in idle], all=False, timeout=timeout)
    return _restart(fleet, idle, timeout=timeout, progress=progress, cancel=cancel, verb="start")


def check_restart(refs: Sequence[str], *, all: bool, timeout: float) -> None:
    """A restart's arguments, checked before any name is looked up."""
    _names_or_all(refs, all)
    if timeout <= 0:
        raise UsageError(f"invalid --timeout {timeout:g}: must be above 0")


def restart(
    fleet: Fleet,
    refs: Sequence[str],
    *,
    timeout: float = DEFAULT_START_TIMEOUT,
    progress: StartProgress | None = None,
    all: bool = False,
    respec: Mapping[str, InstanceSpec] | None = None,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Stop (if running) and start again with the same name, spec, password and data.

    `all`: every instance not stopped on purpose (running, crashed, errored), like PM2's
    `restart all` without the ones you stopped. `respec`: new specs by name (`ocm up`
    recreating what its fleet file changed). Setting `cancel` stops what it launched (the
    records stay) and raises Interrupted."""
    check_restart(refs, all=all, timeout=timeout)
    if all:
        records = [r for r in fleet.records() if r.state is not State.STOPPED and not r.spec.remote]
        if not records:
            return []
        return _restart(
            fleet, records, timeout=timeout, progress=progress, respec=respec, cancel=cancel
        )
    return restart_named(
        fleet, fleet.resolve_all(refs), timeout=timeout, progress=progress, respec=respec,
        cancel=cancel,
    )  # fmt: skip


def restart_named(
    fleet: Fleet,
    records: Sequence[InstanceRecord],
    *,
    timeout: float = DEFAULT_START_TIMEOUT,
    progress: StartProgress | None = None,
    respec: Mapping[str, InstanceSpec] | None = None,
    cancel: threading.Event | None = None,
) -> list[str]:
    """`restart` of the instances a user named (resolved once, by the caller)."""
    remote.refuse(records, "restart")
    return _restart(
        fleet, records, timeout=timeout, progress=progress, respec=respec, cancel=cancel
    )


def _restart(
    fleet: Fleet,
    records: Sequence[InstanceRecord],
    *,
    timeout: float,
    progress: StartProgress | None = None,
    respec: Mapping[str, InstanceSpec] | None = None,
    cancel: threading.Event | None = None,
    verb: str = "restart",
) -> list[str]:
    chosen_specs = {r.name: (respec or {}).get(r.name, r.spec) for r in records}
    binary = _binaries(fleet, list(chosen_specs.values()))  # an instance keeps its choice
    registry = fleet.registry
    for record in records:
        if is_live(record):
            _stop_one(fleet, record, DEFAULT_STOP_TIMEOUT)
    names: list[str] = []
    starter = me()
    for record in records:
        if _interrupted(cancel):
            undo(fleet, names)
            done = f"{', '.join(names)} stopped" if names else "nothing started"
            raise Interrupted(f"{verb} interrupted: {done}")
        chosen_spec = chosen_specs[record.name]
        found = binary(chosen_spec)
        spec = InstanceSpec(**{**chosen_spec.__dict__, "opencode": found.path})
        previous = registry.get(record.name)
        with registry.transaction() as db:
            chosen = _choose_port(spec, registry.claimed_ports(db)) if spec.port_range else None
            # An automatic port stays in the row: the keeper reuses it while it is free.
            # `restarts` counts the keeper's restarts (a crash, a failed health check, a
            # recycle) since the last deliberate start, and this is one: it starts from 0
            # again, as docker's RestartCount and a Kubernetes pod's RESTARTS do.
            registry.relaunch(
                db, record.name, spec, port=chosen or spec.port or previous.port,
                restarts=0, starter=starter, start_timeout=timeout,
                token=secrets.token_hex(8), version=found.version,
            )  # fmt: skip
        _prepare(fleet, spec)
        _launch(fleet, spec)
        names.append(record.name)
        if progress:
            progress(record.name, "spawned")
    return _await_started(fleet, names, timeout, progress, cancel, relaunched=True, verb=verb)


def remove(fleet: Fleet, refs: Sequence[str], *, force: bool = False) -> list[str]:
    """Forget stopped instances: their record, password and private data (not their log)."""
    check_named(refs)
    return remove_named(fleet, fleet.resolve_all(refs), force=force)


def remove_named(
    fleet: Fleet, records: Sequence[InstanceRecord], *, force: bool = False
) -> list[str]:
    """`remove` of the instances a user named (resolved once, by the caller)."""
    remote.refuse(records, "remove")
    for record in records:
        if is_live(record) and not force:
            raise ConflictError(
                f"{record.name} is still running; `ocm stop {record.name}` first (or use --force)",
                instance=record.name,
            )
    removed = []
    for record in records:
        if is_live(record):
            _stop_one(fleet, record, DEFAULT_STOP_TIMEOUT)
        forget(fleet, record.name)
        removed.append(record.name)
    return removed


def forget(fleet: Fleet, name: str) -> None:
    fleet.registry.delete(name)
    credentials.delete_password(fleet.settings, name)
    shutil.rmtree(fleet.settings.instance_dir(name), ignore_errors=True)


#: Another owner's leftovers for `cleanup` to sweep (the task worktrees no task records any
#: more): called with (dry_run, force), it says what it removed (or would remove) and what it
#: kept because it holds work (unless force).
Sweep = Callable[[bool, bool], Swept]


def cleanup(
    fleet: Fleet,
    *,
    older_than: float = 0.0,
    dry_run: bool = False,
    force: bool = False,
    sweeps: Sequence[Sweep] = (),
) -> CleanupReport:
    """Forget stopped/crashed instances, reconcile dead ones, delete orphaned logs/dirs, then
    run the `sweeps` of the packages above (their paths are reported as removed files; what
    they keep because it holds work, as kept, unless `force`).

    An instance that an `ocm start` is still bringing up is live: never touched here.
    """
    if older_than < 0:
        raise UsageError("invalid --older-than: must be 0 or more")
    registry = fleet.registry
    settings = fleet.settings
    report = CleanupReport(dry_run=dry_run)
    now = time.time()
    for record in registry.instances():
        if record.spec.remote:
            continue  # nothing of it runs here: `ocm remote rm` forgets it
        live = is_live(record)
        if not live and record.state in (State.RUNNING, State.STARTING, State.STOPPING):
            report.reconciled.append(record.name)
            if not dry_run:
                registry.mark_crashed(
                    record.name,
                    record.error or "found dead during cleanup",
                    stopped_at=record.stopped_at or now,
                )
                record = registry.get(record.name)
        ended = record.stopped_at or record.updated_at
        finished = record.state in (State.STOPPED, State.CRASHED, State.ERRORED)
        if (
            not live
            and (finished or record.name in report.reconciled)
            and now - ended >= older_than
        ):
            report.removed_instances.append(record.name)
            if not dry_run:
                forget(fleet, record.name)
    known = {r.name for r in registry.instances()}
    if dry_run:
        known -= set(report.removed_instances)
    for path in sorted(settings.logs_dir.glob("*.log*")):
        owner = path.name.split(".log")[0]
        with contextlib.suppress(FileNotFoundError):
            if owner not in known and now - path.stat().st_mtime >= older_than:
                report.removed_files.append(str(path))
                if not dry_run:
                    path.unlink(missing_ok=True)
    if settings.instances_dir.is_dir():
        for path in sorted(settings.instances_dir.iterdir()):
            if path.name not in known and path.name not in report.removed_instances:
                report.removed_files.append(str(path))
                if not dry_run:
                    shutil.rmtree(path, ignore_errors=True)
    report.removed_files += _orphan_passwords(fleet, dry_run=dry_run)
    for sweep in sweeps:
        swept = sweep(dry_run, force)
        report.removed_files += swept.removed
        report.kept += swept.kept
        report.forced += swept.forced
    return report


def _orphan_passwords(fleet: Fleet, *, dry_run: bool) -> list[str]:
    """Password files with no instance: an `ocm remote add` killed between writing one and
    committing its row leaves one. Swept under the registry's lock: every writer stores a
    password inside its row's transaction or after the row exists, so one that is being
    written is never taken for an orphan."""
    settings = fleet.settings
    if not settings.secrets_dir.is_dir():
        return []
    removed = []
    registry = fleet.registry
    with registry.transaction() as db:
        known = registry.names(db)
        for path in sorted(settings.secrets_dir.glob("*.password")):
            if path.name.removesuffix(".password") not in known:
                removed.append(str(path))
                if not dry_run:
                    path.unlink(missing_ok=True)
    return removed


# -- helpers -------------------------------------------------------------------------------------
def _binds_on(host: str) -> Callable[[int], bool]:
    def is_free(port: int) -> bool:
        return ports.port_free(host, port)

    return is_free


def _wait_port_free(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if ports.port_free(host, port):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling with a deadline
