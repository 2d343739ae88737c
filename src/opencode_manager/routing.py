"""Routing: where an instance command goes. A local instance's goes to `instances.lifecycle`
(and `logs`, `inventory`), a Ray cluster instance's to the host agent that owns it
(`cluster.link`).

Each reference is looked up once per command, and the records found are what the commands
below act on (they never look the names up again). The cluster's modules, and with them Ray,
are imported only when a cluster instance is involved: a local `ocm stop`, `start` or
`restart` loads neither. Blocking work runs in worker threads (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .instances import inventory, lifecycle
from .instances.fleet import Fleet
from .instances.inventory import StatusReport
from .instances.lifecycle import StartProgress, StopResult
from .instances.logs import LogLine, level_of, line_filter, log_sources, read_logs
from .models import InstanceInfo, InstanceRecord, InstanceSpec, State

if TYPE_CHECKING:
    from .cluster.link import Link


def split(records: Sequence[InstanceRecord]) -> tuple[list[InstanceRecord], list[InstanceRecord]]:
    """The local (or remote) instances, and those on a Ray cluster (pure)."""
    return [r for r in records if not r.spec.node], [r for r in records if r.spec.node]


def _link(fleet: Fleet) -> Link:
    from .cluster.link import Link

    link = Link(fleet)
    link.connect()
    return link


# -- start -----------------------------------------------------------------------------------
async def start(
    fleet: Fleet,
    requested: list[InstanceSpec],
    *,
    timeout: float,
    progress: StartProgress | None = None,
    cancel: asyncio.Event | None = None,
) -> list[InstanceInfo]:
    """Start local instances; once all are healthy, return them as `ls` shows them."""

    def work(stop: threading.Event) -> list[str]:
        return lifecycle.start(fleet, requested, timeout=timeout, progress=progress, cancel=stop)

    return await inventory.fresh(fleet, await lifecycle.interruptibly(work, cancel))


async def cluster_start(
    fleet: Fleet,
    name: str | None,
    *,
    count: int,
    directory: str | None,
    env: Sequence[str],
    per_host: int | None,
    spread: bool,
    timeout: float,
    cancel: asyncio.Event | None = None,
    opencode: str | None = None,
) -> list[InstanceInfo]:
    """Start instances on the cluster's hosts, all or nothing (an interrupt undoes the start
    on every host); return them as `ls` shows them. `opencode`: their binary on the hosts."""
    from .cluster.link import Link

    where = str(Path(directory).expanduser().resolve()) if directory else os.getcwd()

    def work(stop: threading.Event) -> list[str]:
        return Link(fleet).start(
            name=name, count=count, directory=where, env=env, per_host=per_host,
            spread=spread, timeout=timeout, cancel=stop, opencode=opencode,
        )  # fmt: skip

    return await inventory.fresh(fleet, await lifecycle.interruptibly(work, cancel))


async def start_existing(
    fleet: Fleet,
    refs: Sequence[str],
    *,
    timeout: float,
    progress: StartProgress | None = None,
    cancel: asyncio.Event | None = None,
) -> list[InstanceInfo]:
    """Start the named instances that are not running (running ones are left alone);
    return them all, fresh. Setting `cancel` stops again what it started (Interrupted)."""

    def work(stop: threading.Event) -> list[str]:
        lifecycle.check_named(refs)
        records = fleet.resolve_all(refs)
        lifecycle.start_named(fleet, records, timeout=timeout, progress=progress, cancel=stop)
        return [r.name for r in records]

    return await inventory.fresh(fleet, await lifecycle.interruptibly(work, cancel))


# -- stop, restart, remove -------------------------------------------------------------------
def stop(
    fleet: Fleet, refs: Sequence[str] = (), *, all: bool = False, timeout: float
) -> list[StopResult]:
    """Stop instances: local ones here, cluster ones through their agents."""
    lifecycle.check_stop(refs, all=all, timeout=timeout)
    if all:
        done = lifecycle.stop(fleet, all=True, timeout=timeout)
        # A `starting` row is a cluster start not finished (or whose driver was killed):
        # what its host may run of it is undone through its agent.
        cluster = [
            r for r in fleet.records()
            if r.spec.node and r.state in (State.RUNNING, State.STARTING)
        ]  # fmt: skip
    else:
        local, cluster = split(fleet.resolve_all(refs))
        done = lifecycle.stop_named(fleet, local, timeout) if local else []
    if cluster:
        done += [StopResult(**d) for d in _link(fleet).stop(cluster, timeout)]
    return done


async def restart(
    fleet: Fleet,
    refs: Sequence[str] = (),
    *,
    all: bool = False,
    timeout: float,
    progress: StartProgress | None = None,
    cancel: asyncio.Event | None = None,
) -> list[InstanceInfo]:
    """Restart instances (local ones here, cluster ones through their agents); return them
    as `ls` shows them. Setting `cancel` stops the local ones it relaunched (Interrupted)."""

    def work(stop: threading.Event) -> list[str]:
        lifecycle.check_restart(refs, all=all, timeout=timeout)
        if all:
            names = lifecycle.restart(
                fleet, (), all=True, timeout=timeout, progress=progress, cancel=stop
            )
            cluster = [r for r in fleet.records() if r.spec.node and r.state is State.RUNNING]
        else:
            local, cluster = split(fleet.resolve_all(refs))
            names = (
                lifecycle.restart_named(
                    fleet, local, timeout=timeout, progress=progress, cancel=stop
                )
                if local
                else []
            )
        if cluster:
            names += _link(fleet).restart(cluster, timeout)
        return names

    return await inventory.fresh(fleet, await lifecycle.interruptibly(work, cancel))


def remove(fleet: Fleet, refs: Sequence[str], *, force: bool = False) -> list[str]:
    """Forget instances: local ones here, cluster ones through their agents."""
    lifecycle.check_named(refs)
    local, cluster = split(fleet.resolve_all(refs))
    removed = lifecycle.remove_named(fleet, local, force=force) if local else []
    if cluster:
        removed += _link(fleet).forget(cluster)
    return removed


# -- logs, status ----------------------------------------------------------------------------
def logs(
    fleet: Fleet, refs: Sequence[str], *, lines: int, pattern: str | None, level: str | None
) -> list[LogLine]:
    """The last `lines` lines of each instance's log: local files here, a cluster
    instance's read on its host by its agent."""
    wanted = line_filter(pattern, level, lines)  # bad input first, before looking anything up
    sources = log_sources(fleet, refs)
    files = [(s.name, s.path) for s in sources if s.host is None]
    hosted = [s.host for s in sources if s.host is not None]
    found = read_logs(files, lines, pattern, level) if files else []
    if hosted:
        link = _link(fleet)
        scan = 100_000 if (pattern or level) else lines
        for record in hosted:
            chosen = [ln for ln in link.logs(record, scan) if wanted(ln)][-lines:] if lines else []
            found += [LogLine(record.name, ln, level_of(ln)) for ln in chosen]
    return found


async def status(fleet: Fleet, ref: str) -> StatusReport:
    """`ocm status`: the report made here, and for a cluster instance what its agent sees
    on its host (a lost host has nothing to say)."""
    found = await asyncio.to_thread(fleet.find, ref)
    report = await inventory.status_report(fleet, ref, found)
    if isinstance(found, InstanceRecord) and found.spec.node and found.state is not State.CRASHED:
        host = await asyncio.to_thread(lambda: _link(fleet).status(found))
        report.processes = list(host.get("processes") or [])
        report.connections = dict(host.get("connections") or {})
        report.recent_errors = list(host.get("recent_errors") or [])
        report.info.pid = host.get("pid")
        report.info.rss_bytes = host.get("tree_rss_bytes") or host.get("rss_bytes")
        report.info.uptime_s = host.get("uptime_s")
        report.info.restarts = int(host.get("restarts") or 0)
        report.info.log = host.get("log")
    return report
