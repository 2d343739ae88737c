"""Lifecycle commands over a fleet that may have instances on a Ray cluster: the local ones go
to `lifecycle` as always, the cluster ones to the host agent that owns each (Ray is touched
only when a cluster instance is involved)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import NotFoundError, UsageError
from ..instances import lifecycle
from ..instances.fleet import Fleet
from ..instances.inventory import StatusReport
from ..instances.lifecycle import StartProgress, StopResult
from ..instances.logs import LogLine, level_of, line_filter
from ..models import InstanceRecord, State


def split(fleet: Fleet, refs: Sequence[str]) -> tuple[list[str], list[InstanceRecord]]:
    """References to local (or remote) instances, and the cluster instances among them."""
    local: list[str] = []
    cluster: dict[str, InstanceRecord] = {}
    for ref in refs:
        try:
            record = fleet.resolve(ref)
        except NotFoundError:
            local.append(ref)  # lifecycle says what is wrong with it
            continue
        if record.spec.node:
            cluster.setdefault(record.name, record)
        else:
            local.append(ref)
    return local, list(cluster.values())


def _link(fleet: Fleet) -> Any:
    from .link import Link

    link = Link(fleet)
    link.connect()
    return link


def stop(
    fleet: Fleet, refs: Sequence[str] = (), *, all: bool = False, timeout: float
) -> list[StopResult]:
    if all and refs:
        raise UsageError("give instance names or --all, not both")
    if all:
        done = lifecycle.stop(fleet, all=True, timeout=timeout)
        # A `starting` row is a cluster start not finished (or whose driver was killed):
        # what its host may run of it is undone through its agent.
        cluster = [
            r for r in fleet.records()
            if r.spec.node and r.state in (State.RUNNING, State.STARTING)
        ]  # fmt: skip
    else:
        local, cluster = split(fleet, refs)
        done = lifecycle.stop(fleet, local, timeout=timeout) if local or not cluster else []
    if cluster:
        done += [StopResult(**d) for d in _link(fleet).stop(cluster, timeout)]
    return done


def restart(
    fleet: Fleet,
    refs: Sequence[str] = (),
    *,
    all: bool = False,
    timeout: float,
    progress: StartProgress | None = None,
) -> list[str]:
    if all and refs:
        raise UsageError("give instance names or --all, not both")
    if all:
        names = lifecycle.restart(fleet, (), all=True, timeout=timeout, progress=progress)
        cluster = [r for r in fleet.records() if r.spec.node and r.state is State.RUNNING]
    else:
        local, cluster = split(fleet, refs)
        names = (
            lifecycle.restart(fleet, local, timeout=timeout, progress=progress)
            if local or not cluster
            else []
        )
    if cluster:
        names += _link(fleet).restart(cluster, timeout)
    return names


def remove(fleet: Fleet, refs: Sequence[str], *, force: bool = False) -> list[str]:
    local, cluster = split(fleet, refs)
    removed = lifecycle.remove(fleet, local, force=force) if local or not cluster else []
    if cluster:
        removed += _link(fleet).forget(cluster)
    return removed


def logs(
    fleet: Fleet, records: Sequence[InstanceRecord], lines: int, pattern: str | None,
    level: str | None,
) -> list[LogLine]:  # fmt: skip
    """The last lines of cluster instances' logs, read on their hosts by their agents."""
    wanted = line_filter(pattern, level, lines)
    link = _link(fleet)
    out: list[LogLine] = []
    for record in records:
        scan = 100_000 if (pattern or level) else lines
        chosen = [ln for ln in link.logs(record, scan) if wanted(ln)][-lines:] if lines else []
        out += [LogLine(record.name, ln, level_of(ln)) for ln in chosen]
    return out


def with_host(fleet: Fleet, record: InstanceRecord, report: StatusReport) -> StatusReport:
    """`ocm status` of a cluster instance: the driver's view plus what its agent sees."""
    host = _link(fleet).status(record)
    report.processes = list(host.get("processes") or [])
    report.connections = dict(host.get("connections") or {})
    report.recent_errors = list(host.get("recent_errors") or [])
    report.info.pid = host.get("pid")
    report.info.rss_bytes = host.get("tree_rss_bytes") or host.get("rss_bytes")
    report.info.uptime_s = host.get("uptime_s")
    report.info.restarts = int(host.get("restarts") or 0)
    report.info.log = host.get("log")
    return report
