"""What runs: managed instances reconciled with their processes, foreign servers, and the
detailed status report (process tree, memory, connections, sessions, MCP, LSP, errors)."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import psutil

from .. import process
from ..client.endpoint import Endpoint
from ..errors import ServerError
from ..models import InstanceInfo, InstanceRecord, Status, derive_status
from . import probe
from .discovery import ForeignServer, find_foreign

if TYPE_CHECKING:
    from ..manager import Manager


def list_instances(
    manager: Manager,
    *,
    include_foreign: bool = True,
    probe_health: bool = True,
    measure_cpu: bool = True,
    names: Collection[str] | None = None,
) -> list[InstanceInfo]:
    """Every managed instance (reconciled with what runs) and every foreign server.

    CPU use comes from the keepers' samples; servers without a fresh sample are measured
    over a 0.1 s window unless `measure_cpu` is off (their CPU is then None). `names` limits
    the managed instances looked at (and probed) to those.
    """
    records = [r for r in manager.registry.instances() if names is None or r.name in names]
    keepers = [process.verified(r.keeper) for r in records]
    servers = [process.verified(r.server) for r in records]
    foreign: list[ForeignServer] = []
    if include_foreign:
        own = {p.pid for p in servers if p is not None}
        own |= {r.server.pid for r in records if r.server}
        foreign = find_foreign(own)
    foreign_procs: list[psutil.Process | None] = []
    for f in foreign:
        foreign_procs.append(process.verified(process.identity_of(f.pid)))
    now = time.time()
    # Supervised servers were sampled by their keeper; measure only the others (this
    # takes a 0.1 s window, so `ls` is fast when there are none).
    fresh = [
        server is not None
        and keeper is not None
        and record.sampled_at is not None
        and now - record.sampled_at < 3 * record.spec.health_interval + 5
        for record, keeper, server in zip(records, keepers, servers, strict=True)
    ]
    sampler = probe.CpuSampler(
        [None if ok else server for ok, server in zip(fresh, servers, strict=True)] + foreign_procs
    )
    if not measure_cpu:
        unmeasured = sampler.procs
        sampler = probe.CpuSampler([None] * len(unmeasured))
    endpoints: list[Endpoint | None] = []
    for record, server in zip(records, servers, strict=True):
        endpoints.append(manager.endpoint(record) if server is not None else None)
    endpoints += [Endpoint(url=f.url) for f in foreign]
    health = (
        probe.check_health(endpoints)
        if probe_health
        else [probe.Health(healthy=None) for _ in endpoints]
    )
    stats = sampler.read()
    if not measure_cpu:  # memory needs no window: report it, leave CPU unknown
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
                pid=record.server.pid if (record.server and servers[i]) else None,
                port=record.port,
                url=record.url,
                hostname=record.spec.hostname,
                version=health[i].version or record.version,
                healthy=health[i].healthy if servers[i] is not None else False,
                started_at=record.started_at,
                uptime_s=round(now - record.started_at, 1)
                if (record.started_at and live)
                else None,
                restarts=record.restarts,
                rss_bytes=stat.rss_bytes if stat else None,
                cpu_percent=stat.cpu_percent if stat else None,
                log=str(manager.settings.log_path(record.name)),
                dir=record.spec.dir,
                auth=record.spec.auth,
                keeper_pid=record.keeper.pid if (record.keeper and keepers[i]) else None,
                supervised=keepers[i] is not None if live else None,
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
                version=h.version,
                healthy=h.healthy,
                started_at=f.create_time,
                uptime_s=round(now - f.create_time, 1),
                restarts=0,
                rss_bytes=stat.rss_bytes if stat else None,
                cpu_percent=stat.cpu_percent if stat else None,
                log=None,
                dir=_cwd_of(f.pid),
                auth=h.auth_required
                if h.auth_required is not None
                else (False if h.healthy else None),
            )
        )
    return infos


def status_report(manager: Manager, ref: str) -> dict[str, Any]:
    """The detailed report: process tree, memory, connections, sessions, MCP, LSP, errors."""
    found = manager._resolve(ref)
    info = manager.info(ref)
    report: dict[str, Any] = info.to_dict()
    if isinstance(found, InstanceRecord):
        server = process.verified(found.server)
        endpoint = manager.endpoint(found)
        directory: str | None = found.spec.dir
        report["created_at"] = found.created_at
        report["stopped_at"] = found.stopped_at
        recent = manager.registry.events(found.name, limit=10)
        report["events"] = recent
        report["last_event"] = recent[-1] if recent else None
        report["recent_errors"] = manager.recent_errors(found.name)
    else:
        server = process.verified(process.identity_of(found.pid))
        endpoint = Endpoint(url=found.url)
        directory = None
        report["recent_errors"] = []
    report["processes"] = probe.process_tree(server) if server else []
    report["tree_rss_bytes"] = sum(p["rss_bytes"] for p in report["processes"])
    report["connections"] = probe.connections(server) if server else {}
    report.update(
        _api_report(endpoint, directory)
        if server and endpoint
        else {"sessions": None, "mcp": None, "lsp": None}
    )
    return report


def _api_report(endpoint: Endpoint, directory: str | None) -> dict[str, Any]:
    from ..client import OpencodeClient
    from ..client import operations as ops

    out: dict[str, Any] = {"api_errors": []}
    with OpencodeClient(endpoint, timeout=5.0) as client:
        try:
            listed = client.call(ops.sessions(directory))
            states = client.call(ops.session_status(directory))
            busy = [
                sid
                for sid, st in states.items()
                if isinstance(st, dict) and st.get("type") != "idle"
            ]
            out["sessions"] = {
                "total": len(listed),
                "busy": len(busy),
                "idle": max(len(listed) - len(busy), 0),
                "busy_ids": busy,
            }
        except ServerError as exc:
            out["sessions"] = None
            out["api_errors"].append(str(exc))
        try:
            out["mcp"] = client.call(ops.mcp_status(directory))
        except ServerError as exc:
            out["mcp"] = None
            out["api_errors"].append(str(exc))
        try:
            out["lsp"] = client.call(ops.lsp_status(directory))
        except ServerError as exc:
            out["lsp"] = None
            out["api_errors"].append(str(exc))
    return out


def _cwd_of(pid: int) -> str | None:
    try:
        return psutil.Process(pid).cwd()
    except (psutil.Error, OSError):
        return None
