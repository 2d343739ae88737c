"""Looking at live instances: health checks in parallel, and process figures from psutil."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from ..client import healthcheck
from ..client.endpoint import Endpoint
from ..client.readiness import Phase
from ..errors import ServerError
from ..lines import Line


@dataclass
class Health:
    healthy: bool | None  # None: not probed
    version: str | None = None
    auth_required: bool | None = None
    error: str | None = None
    line: Line | None = None  # the line its answers prove


async def _one(endpoint: Endpoint, timeout: float, expected: Line | None) -> Health:
    try:
        verdict = await healthcheck.check(endpoint, timeout=timeout, expected=expected)
    except ServerError as exc:
        return Health(healthy=False, error=str(exc))
    if verdict.phase is Phase.LOCKED:
        return Health(healthy=None, auth_required=True, error=verdict.detail, line=verdict.line)
    if verdict.ready:
        return Health(
            healthy=True,
            version=verdict.version,
            auth_required=endpoint.password is not None,
            line=verdict.line,
        )
    return Health(healthy=False, version=verdict.version, error=verdict.detail, line=verdict.line)


async def check_health_async(
    endpoints: Sequence[Endpoint | None],
    timeout: float = 1.5,
    expected: Sequence[Line | None] | None = None,
) -> list[Health]:
    """Each server's health check, in parallel; `expected`: the line each should speak
    (None: find out, 2.x's route first)."""
    lines = list(expected) if expected is not None else [None] * len(endpoints)

    async def run(ep: Endpoint | None, line: Line | None) -> Health:
        return Health(healthy=None) if ep is None else await _one(ep, timeout, line)

    return list(
        await asyncio.gather(*(run(ep, ln) for ep, ln in zip(endpoints, lines, strict=True)))
    )


@dataclass
class ProcStats:
    rss_bytes: int
    cpu_percent: float | None
    threads: int
    children: list[dict[str, Any]] = field(default_factory=list)


class CpuMeter:
    """CPU% from one look to the next, never by waiting for a window.

    psutil's `cpu_percent(None)` compares with the previous call on the same `Process`
    object, so the meter keeps the objects it has looked at (by PID and start time, so a
    reused PID is a new process). At first sight a process's CPU is unknown (None): `ocm ls`,
    one look, shows it so, where it used to sleep 0.1 s for a figure of that 0.1 s; a
    long-lived front (`top`, the dashboard, `metrics --serve`, MCP) has it from the second
    look on, over the time since the previous one. Managed servers rarely need it: their
    keepers sample them."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, float], psutil.Process] = {}
        self._lock = threading.Lock()  # fronts may look from several threads

    def read(self, procs: Sequence[psutil.Process | None]) -> list[ProcStats | None]:
        """Memory and threads now, and CPU since this meter last looked at each process."""
        with self._lock:
            out = [self._one(proc) if proc is not None else None for proc in procs]
            self._seen = {key: p for key, p in self._seen.items() if p.is_running()}
        return out

    def _one(self, proc: psutil.Process) -> ProcStats | None:
        try:
            key = (proc.pid, proc.create_time())
        except psutil.Error:
            return None
        first = key not in self._seen
        known = self._seen.setdefault(key, proc)
        stats = stats_of(known, prime=False)  # a first look's CPU figure is meaningless
        if stats is not None and first:
            stats.cpu_percent = None
        return stats


def stats_of(proc: psutil.Process, *, prime: bool = True, cpu: bool = True) -> ProcStats | None:
    try:
        with proc.oneshot():
            if prime and cpu:
                proc.cpu_percent(None)
            return ProcStats(
                rss_bytes=proc.memory_info().rss,
                cpu_percent=proc.cpu_percent(None) if cpu else None,
                threads=proc.num_threads(),
            )
    except psutil.Error:
        return None


def process_tree(proc: psutil.Process) -> list[dict[str, Any]]:
    """The process and every descendant, with the figures `ocm status` shows."""
    rows: list[dict[str, Any]] = []
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return rows
    for member in members:
        try:
            with member.oneshot():
                rows.append(
                    {
                        "pid": member.pid,
                        "ppid": member.ppid(),
                        "pgid": _pgid(member.pid),
                        "name": member.name(),
                        "cmd": " ".join(member.cmdline()[:4]),
                        "rss_bytes": member.memory_info().rss,
                        "status": member.status(),
                    }
                )
        except psutil.Error:
            continue
    return rows


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def connections(proc: psutil.Process) -> dict[str, int]:
    """TCP connections of a process counted by state (LISTEN, ESTABLISHED, ...)."""
    counts: dict[str, int] = {}
    try:
        for conn in proc.net_connections(kind="tcp"):
            counts[conn.status] = counts.get(conn.status, 0) + 1
    except psutil.Error:
        pass
    return counts
