"""What runs: managed instances reconciled with their processes, foreign servers, and the
detailed status report (process tree, memory, connections, sessions, MCP, LSP, errors)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

from .. import load, process
from ..client.endpoint import Endpoint
from ..errors import ConflictError, NotFoundError, OcmError, ServerError, StartError
from ..lines import Line, known_line
from ..models import (
    InstanceInfo,
    InstanceRecord,
    InstanceSpec,
    LifecycleEvent,
    Owner,
    ResourceSample,
    State,
    Status,
    derive_status,
)
from . import binary as binaries
from . import probe
from .discovery import ForeignServer, find_foreign, read_services
from .fleet import Fleet, current_server, keeper_answering
from .spec import is_loopback_host

#: How long `ls` waits for each server's health check.
HEALTH_TIMEOUT = 1.5
#: Seconds (on an idle machine; stretched for the load) a server that missed a health check
#: right after its start gets to answer two in a row.
CONFIRM_WITHIN = 30.0
#: The first health check's deadline (as `ls` has it); each retry doubles it, up to the last.
CONFIRM_PROBES = (HEALTH_TIMEOUT, 3.0, 6.0, 10.0)
#: How long `ls` lets a foreign 2.x server's executable take to say its version.
FOREIGN_VERSION_TIMEOUT = 5.0

if TYPE_CHECKING:
    from ..client.shells import AsyncOpencodeClient


async def list_instances(
    fleet: Fleet,
    *,
    include_foreign: bool = True,
    probe_health: bool = True,
    measure_cpu: bool = True,
    names: Sequence[str] | None = None,
    health_timeout: float = HEALTH_TIMEOUT,
) -> list[InstanceInfo]:
    """Every managed instance (reconciled with what runs) and every foreign server.

    CPU use comes from the keepers' samples; servers without a fresh sample (foreign ones,
    mostly) from the fleet's CPU meter, which never waits: unknown (None) at first sight,
    the use since the previous look after that; not at all when `measure_cpu` is off.
    `names` limits the managed instances looked at (and probed) to those.
    """
    records = [
        r for r in await asyncio.to_thread(fleet.records) if names is None or r.name in names
    ]
    keepers = [process.verified(r.keeper) for r in records]
    servers = [current_server(r) for r in records]
    foreign: list[ForeignServer] = []
    if include_foreign:
        own = {p.pid for p in servers if p is not None}
        own |= {r.server.pid for r in records if r.server}
        services = {
            s.pid: s for s in await asyncio.to_thread(read_services, fleet.settings.user_state_home)
        }
        foreign = await asyncio.to_thread(find_foreign, own, services)
        # A remote instance added by a loopback URL is a server on this machine: list it once.
        remote_ports = {
            r.port for r in records if r.spec.remote and is_loopback_host(r.spec.hostname)
        }
        foreign = [f for f in foreign if f.port not in remote_ports]
    foreign_procs = [process.verified(process.identity_of(f.pid)) for f in foreign]
    now = time.time()
    # Supervised servers were sampled by their keeper; measure only the others.
    fresh = [
        server is not None
        and keeper is not None
        and record.sampled_at is not None
        and now - record.sampled_at < 3 * record.spec.health_interval + 5
        for record, keeper, server in zip(records, keepers, servers, strict=True)
    ]
    unmeasured: list[psutil.Process | None] = [
        None if ok else server for ok, server in zip(fresh, servers, strict=True)
    ] + foreign_procs
    endpoints: list[Endpoint | None] = [
        fleet.endpoint(record) if (server is not None or record.spec.remote) else None
        for record, server in zip(records, servers, strict=True)
    ]
    endpoints += [Endpoint(url=f.url) for f in foreign]
    # A managed instance speaks the line of its binary; a foreign one is asked which.
    expected = [known_line(r.version) for r in records] + [None for _ in foreign]
    health = (
        await probe.check_health_async(endpoints, health_timeout, expected=expected)
        if probe_health
        else [probe.Health(healthy=None) for _ in endpoints]
    )
    foreign_versions = await asyncio.gather(
        *(_foreign_version(fleet, f, health[len(records) + j]) for j, f in enumerate(foreign))
    )
    if measure_cpu:
        stats = fleet.cpu.read(unmeasured)
    else:  # memory only, CPU unknown
        stats = [
            probe.stats_of(proc, prime=False, cpu=False) if proc is not None else None
            for proc in unmeasured
        ]
    for i, record in enumerate(records):
        if fresh[i]:
            stats[i] = probe.ProcStats(
                rss_bytes=record.rss_bytes or 0, cpu_percent=record.cpu_percent or 0.0, threads=0
            )
    infos: list[InstanceInfo] = []
    for i, record in enumerate(records):
        if record.spec.remote:
            infos.append(remote_info(record, health[i]))
            continue
        server = servers[i]
        status = derive_status(
            record.state,
            keeper_alive=keepers[i] is not None,
            server_alive=servers[i] is not None,
            healthy=health[i].healthy,
        )
        live = status in (Status.RUNNING, Status.UNHEALTHY, Status.STARTING, Status.STOPPING)
        stat = stats[i]
        infos.append(
            InstanceInfo(
                name=record.name,
                status=status,
                managed=True,
                pid=server.pid if server is not None else None,
                port=record.port,
                url=record.url,
                hostname=record.spec.hostname,
                version=health[i].version or record.version,
                line=_line_number(health[i].line, health[i].version or record.version),
                healthy=health[i].healthy if servers[i] is not None else False,
                started_at=record.started_at,
                uptime_s=round(now - record.started_at, 1)
                if (record.started_at and live)
                else None,
                restarts=record.restarts,
                rss_bytes=stat.rss_bytes if stat else None,
                cpu_percent=stat.cpu_percent if stat else None,
                log=str(fleet.settings.log_path(record.name)),
                dir=record.spec.dir,
                auth=record.spec.auth,
                keeper_pid=record.keeper.pid if (record.keeper and keepers[i]) else None,
                supervised=keepers[i] is not None if live else None,
                keeper_answering=keeper_answering(record, now, server_healthy=health[i].healthy)
                if live and servers[i] is not None
                else None,
                keeper_error=record.keeper_error,
                error=record.error if status in (Status.CRASHED, Status.ERRORED) else None,
                last_exit=record.last_exit,
            )
        )
    offset = len(records)
    for j, f in enumerate(foreign):
        h = health[offset + j]
        stat = stats[offset + j]
        infos.append(
            InstanceInfo(
                name=f"foreign:{f.port}",
                status=Status.FOREIGN,
                managed=False,
                pid=f.pid,
                port=f.port,
                url=f.url,
                hostname=f.hostname,
                version=foreign_versions[j],
                line=_line_number(h.line, foreign_versions[j]),
                service=f.service,
                healthy=h.healthy,
                started_at=f.create_time,
                uptime_s=round(now - f.create_time, 1),
                restarts=0,
                rss_bytes=stat.rss_bytes if stat else None,
                cpu_percent=stat.cpu_percent if stat else None,
                log=None,
                dir=_cwd_of(f.pid),
                owner=Owner.FOREIGN,
                auth=h.auth_required
                if h.auth_required is not None
                else (False if h.healthy else None),
            )
        )
    return infos


def _line_number(proved: Line | None, version: str | None) -> int | None:
    """The line `ls` shows: what the server's answers proved, else its version's."""
    line = proved or known_line(version)
    return line.value if line is not None else None


async def _foreign_version(fleet: Fleet, server: ForeignServer, health: probe.Health) -> str | None:
    """A foreign server's version: what it told us (1.x without a password), what its
    service registration says, or, for a 2.x server whose password is not ours, what its
    executable says (`--version`, cached per file, so `ls` pays it once)."""
    if health.version or server.version:
        return health.version or server.version
    if health.line is not Line.V2 or not server.exe:
        return None
    try:
        return await asyncio.to_thread(
            binaries.probe_version, server.exe, fleet.settings,
            timeout=FOREIGN_VERSION_TIMEOUT, attempts=1,
        )  # fmt: skip
    except OcmError:
        return None


def remote_info(record: InstanceRecord, health: probe.Health) -> InstanceInfo:
    """A remote instance as `ls` shows it: its health says everything ocm can know."""
    if record.state in (State.STOPPED, State.CRASHED):  # a cluster instance stopped or lost
        status, error = Status(record.state.value), record.error
    elif record.state is State.STARTING:  # a cluster start under way, or one cut short
        status, error = Status.STARTING, record.error
    elif health.healthy:
        status, error = Status.RUNNING, None
    elif health.auth_required:
        status, error = Status.UNHEALTHY, "it refuses the stored password"
    else:
        status, error = Status.UNREACHABLE, health.error or "no answer"
    return InstanceInfo(
        name=record.name,
        status=status,
        managed=True,
        pid=None,
        port=record.port,
        url=record.url,
        hostname=record.spec.hostname,
        version=health.version or record.version,
        line=_line_number(health.line, health.version or record.version),
        healthy=bool(health.healthy),
        started_at=record.started_at,
        uptime_s=None,  # the server's own uptime is its host's to know
        restarts=0,
        rss_bytes=None,
        cpu_percent=None,
        log=None,
        dir=record.spec.dir,
        auth=record.spec.auth,
        error=error,
        owner=Owner.CLUSTER if record.spec.node else Owner.REMOTE,
    )


async def fresh(
    fleet: Fleet, names: Sequence[str], *, within: float = CONFIRM_WITHIN
) -> list[InstanceInfo]:
    """Instances a command just started, as `ls` shows them, in the order given, each one
    healthy (see `confirmed`)."""

    async def look(pending: Sequence[str], timeout: float) -> list[InstanceInfo]:
        # Just started: a CPU reading would only measure the start itself, so skip the window.
        return await list_instances(
            fleet, include_foreign=False, measure_cpu=False, names=pending,
            health_timeout=timeout,
        )  # fmt: skip

    return await confirmed(names, look, within=load.scaled(within))


Look = Callable[[Sequence[str], float], Awaitable[list[InstanceInfo]]]


async def confirmed(
    names: Sequence[str],
    look: Look,
    *,
    within: float,
    clock: Callable[[], float] = time.monotonic,
) -> list[InstanceInfo]:
    """`look` at just-started instances until each has answered its health check: at once,
    or, if it missed one (a busy machine: its keeper saw it healthy a moment ago), two in a
    row after that, with longer deadlines. A start returns healthy instances or fails with
    the reason, never an `unhealthy` row with exit 0 (issue 26). StartError if one stays
    unanswering for `within` seconds or ends meanwhile."""
    by_name = {info.name: info for info in await look(names, CONFIRM_PROBES[0])}
    streak = {n: 0 for n, info in by_name.items() if info.status is Status.UNHEALTHY}
    deadline = clock() + within
    attempt = 0
    while pending := [n for n, k in streak.items() if k < 2]:
        if clock() > deadline:
            raise StartError(
                f"{', '.join(pending)} started, but did not answer its health check twice in "
                f"a row within {within:.0f} s ({load.describe()}); it may still be coming up: "
                f"`ocm status {pending[0]}` shows it, `ocm logs {pending[0]}` says why",
                instance=pending[0],
            )
        attempt += 1
        probe_timeout = CONFIRM_PROBES[min(attempt, len(CONFIRM_PROBES) - 1)]
        for info in await look(pending, probe_timeout):
            by_name[info.name] = info
            if info.status is Status.RUNNING:
                streak[info.name] += 1
            elif info.status is Status.UNHEALTHY:
                streak[info.name] = 0
            else:
                raise StartError(
                    f"{info.name} is {info.status.value} right after it started; "
                    f"`ocm logs {info.name}` says why",
                    instance=info.name,
                )
    return [by_name[name] for name in names if name in by_name]


async def instance_info(
    fleet: Fleet, ref: str, found: InstanceRecord | ForeignServer | None = None
) -> InstanceInfo:
    """One instance (or foreign server) as `ls` shows it (`found`: `ref` already looked up)."""
    if found is None:
        found = await asyncio.to_thread(fleet.find, ref)
    foreign = isinstance(found, ForeignServer)
    name = found.name if isinstance(found, InstanceRecord) else f"foreign:{found.port}"
    for info in await list_instances(
        fleet, include_foreign=foreign, names=() if foreign else (name,)
    ):
        if info.name == name:
            return info
    raise NotFoundError(f"{ref} vanished while looking at it")


@dataclass
class SessionCounts:
    total: int
    busy: int
    idle: int
    busy_ids: list[str] = field(default_factory=list)


@dataclass
class StatusReport:
    """`ocm status`: the `ls` view of one instance plus everything worth knowing about it."""

    info: InstanceInfo
    created_at: float | None = None
    stopped_at: float | None = None
    events: list[LifecycleEvent] = field(default_factory=list)
    recent_errors: list[str] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    connections: dict[str, int] = field(default_factory=dict)
    sessions: SessionCounts | None = None
    mcp: dict[str, Any] | None = None
    lsp: list[Any] | None = None
    api_errors: list[str] = field(default_factory=list)
    settings: dict[str, Any] | None = None  # how it was started (env: keys only, no values)

    @property
    def healthy(self) -> bool:
        """Running and answering: what `ocm status` exits 0 for."""
        return self.info.status in (Status.RUNNING, Status.FOREIGN) and bool(self.info.healthy)

    @property
    def tree_rss_bytes(self) -> int:
        return sum(int(p["rss_bytes"]) for p in self.processes)

    @property
    def last_event(self) -> LifecycleEvent | None:
        return self.events[-1] if self.events else None

    def to_dict(self) -> dict[str, Any]:
        data = self.info.to_dict()
        data.update(
            created_at=self.created_at,
            stopped_at=self.stopped_at,
            events=[e.to_dict() for e in self.events],
            last_event=self.last_event.to_dict() if self.last_event else None,
            recent_errors=self.recent_errors,
            processes=self.processes,
            tree_rss_bytes=self.tree_rss_bytes,
            connections=self.connections,
            sessions=asdict(self.sessions) if self.sessions else None,
            mcp=self.mcp,
            lsp=self.lsp,
            api_errors=self.api_errors,
            settings=self.settings,
        )
        return data


def spec_settings(spec: InstanceSpec) -> dict[str, Any]:
    """An instance's settings as `ocm status` shows them: environment keys, never values
    (they may hold API keys)."""
    return {
        "hostname": spec.hostname,
        "port": spec.port,
        "port_range": list(spec.port_range) if spec.port_range else None,
        "cors": list(spec.cors),
        "log_level": spec.log_level,
        "env_keys": sorted({key for key, _ in spec.env}),
        "auth": spec.auth,
        "shared_data": spec.shared_data,
        "warm": spec.warm,
        "opencode": spec.opencode,
        "binary": spec.binary,  # its own choice (a version or a path), if it has one
        "restart": spec.restart.value,
        "max_restarts": spec.max_restarts,
        "restart_window": spec.restart_window,
        "health_interval": spec.health_interval,
        "max_memory": spec.max_memory,
        "max_age": spec.max_age,
        "log_max_size": spec.log_max_size,
        "log_keep": spec.log_keep,
        "project": spec.project,  # the fleet file's, when it started from one
        "model": spec.model,
        "agent": spec.agent,
        "remote": spec.remote,
        "username": spec.username,
    }


async def status_report(
    fleet: Fleet, ref: str, found: InstanceRecord | ForeignServer | None = None
) -> StatusReport:
    """The detailed report: process tree, memory, connections, sessions, MCP, LSP, errors
    (`found`: `ref` already looked up)."""
    if found is None:
        found = await asyncio.to_thread(fleet.find, ref)
    report = StatusReport(info=await instance_info(fleet, ref, found))
    if isinstance(found, InstanceRecord):
        server = current_server(found)
        endpoint = fleet.endpoint(found)
        directory: str | None = found.spec.dir
        report.created_at = found.created_at
        report.stopped_at = found.stopped_at
        report.events = await asyncio.to_thread(fleet.registry.events, found.name, 10)
        report.recent_errors = await asyncio.to_thread(fleet.recent_errors, found.name)
        report.settings = spec_settings(found.spec)
    else:
        server = process.verified(process.identity_of(found.pid))
        endpoint = Endpoint(url=found.url, line=Line(report.info.line or Line.V1))
        directory = None
    if server is not None:
        report.processes = probe.process_tree(server)
        report.connections = probe.connections(server)
    remote = isinstance(found, InstanceRecord) and found.spec.remote
    if endpoint is not None and (server is not None or (remote and report.info.healthy)):
        await _ask_server(report, fleet.client(endpoint, timeout=5.0), directory)
    return report


async def _ask_server(
    report: StatusReport, client: AsyncOpencodeClient, directory: str | None
) -> None:
    answers: list[Any] = await asyncio.gather(
        client.sessions(directory),
        client.session_status(directory),
        client.mcp_status(directory),
        client.lsp_status(directory),
        return_exceptions=True,
    )
    listed, states, mcp, lsp = answers
    for answer in (listed, states, mcp, lsp):
        if isinstance(answer, ServerError):
            # One broken config fails every call alike: say it once, in the server's words.
            problem = getattr(answer, "detail", None) or str(answer)
            if problem not in report.api_errors:
                report.api_errors.append(problem)
        elif isinstance(answer, BaseException):
            raise answer
    if isinstance(listed, list) and isinstance(states, dict):
        busy = [
            sid for sid, st in states.items() if isinstance(st, dict) and st.get("type") != "idle"
        ]
        report.sessions = SessionCounts(
            total=len(listed), busy=len(busy), idle=max(len(listed) - len(busy), 0), busy_ids=busy
        )
    report.mcp = mcp if isinstance(mcp, dict) else None
    report.lsp = lsp if isinstance(lsp, list) else None


def client_env(fleet: Fleet, ref: str) -> dict[str, str]:
    """Variables that let OpenCode's own CLI, curl and SDKs reach the instance, and the
    binary it runs."""
    record = fleet.resolve(ref)
    if not record.url:
        raise ConflictError(f"{record.name} has no URL yet (status {record.state.value})")
    out = {"OPENCODE_SERVER_URL": record.url, "OPENCODE_SERVER_USERNAME": record.spec.username}
    password = fleet.password(record)
    if password:
        out["OPENCODE_SERVER_PASSWORD"] = password
        if known_line(record.version) is Line.V2:
            # 2.x's own clients (`opencode --server`, `opencode run --server`) read
            # OPENCODE_PASSWORD before OPENCODE_SERVER_PASSWORD: one left from elsewhere wins.
            out["OPENCODE_PASSWORD"] = password
    # The binary it runs: `"$OPENCODE_BIN" attach "$OPENCODE_SERVER_URL"` works when OpenCode
    # came from `ocm install` and is not on PATH (issue 26).
    if record.spec.opencode and os.access(record.spec.opencode, os.X_OK):
        out["OPENCODE_BIN"] = record.spec.opencode
    return out


def samples(fleet: Fleet, ref: str, since: float | None = None) -> list[ResourceSample]:
    """The instance's CPU and memory over the last 30 minutes, as its keeper sampled them at
    each health check, oldest first."""
    return fleet.registry.samples(fleet.resolve(ref).name, since=since)


def lifecycle_events(
    fleet: Fleet, ref: str | None, limit: int | None, after: int | None = None
) -> list[LifecycleEvent]:
    name = fleet.resolve(ref).name if ref else None
    return fleet.registry.events(name, limit, after=after)


def _cwd_of(pid: int) -> str | None:
    try:
        return psutil.Process(pid).cwd()
    except (psutil.Error, OSError):
        return None
