"""A snapshot of the whole fleet, for `ocm top`, the metrics and the dashboard (mostly reads,
in parallel)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import process
from ..errors import ServerError
from ..instances import probe
from ..instances.fleet import Fleet
from ..instances.inventory import list_instances
from ..models import InstanceRecord, LifecycleEvent, Status

PROBE_TIMEOUT = 3.0  # seconds a frame waits for an instance's sessions


@dataclass
class FleetRow:
    """One instance in a fleet frame."""

    name: str
    status: str
    pid: int | None
    uptime_s: float | None
    restarts: int
    cpu_percent: float | None
    rss_bytes: int | None
    connections: int | None
    busy: int | None
    idle: int | None
    sessions: int | None
    last_event: LifecycleEvent | None
    version: str | None = None  # the OpenCode it runs: a mixed fleet runs both lines

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["last_event"] = self.last_event.to_dict() if self.last_event else None
        return data


@dataclass
class FleetTotals:
    instances: int = 0
    running: int = 0
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    busy: int = 0
    sessions: int = 0


@dataclass
class FleetFrame:
    """`ocm top` once: every managed instance, and the totals."""

    instances: list[FleetRow] = field(default_factory=list)
    totals: FleetTotals = field(default_factory=FleetTotals)
    taken_at: float = field(default_factory=time.time)  # when the frame was read

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "instances": [r.to_dict() for r in self.instances],
            "totals": asdict(self.totals),
        }


async def _sessions(fleet: Fleet, records: list[InstanceRecord]) -> dict[str, tuple[int, int]]:
    """(busy, total) sessions per instance, in its project directory."""

    async def one(record: InstanceRecord) -> tuple[str, tuple[int, int] | None]:
        endpoint = fleet.endpoint(record)
        if endpoint is None:
            return record.name, None
        # A frame is a probe: its own short deadline, not the tasks' setting, no retry.
        client = fleet.client(endpoint, timeout=PROBE_TIMEOUT)
        try:
            listed, busy = await asyncio.gather(
                client.sessions(record.spec.dir), client.session_status(record.spec.dir)
            )
        except ServerError:
            return record.name, None
        return record.name, (len(busy), len(listed))

    pairs = await asyncio.gather(*(one(r) for r in records))
    return {name: counts for name, counts in pairs if counts is not None}


async def snapshot(fleet: Fleet) -> FleetFrame:
    """Per instance: status, uptime, restarts, CPU, RSS, connections, sessions, last event."""
    infos = await list_instances(fleet, include_foreign=False)
    records = {r.name: r for r in await asyncio.to_thread(fleet.records)}
    live = [
        records[i.name]
        for i in infos
        if i.status in (Status.RUNNING, Status.UNHEALTHY) and i.name in records
    ]
    sessions = await _sessions(fleet, live) if live else {}
    frame = FleetFrame()
    for info in infos:
        record = records.get(info.name)
        server = process.verified(record.server) if record else None
        conns = probe.connections(server).get("ESTABLISHED", 0) if server else None
        busy, total = sessions.get(info.name, (None, None))
        events = await asyncio.to_thread(fleet.registry.events, info.name, 1)
        frame.instances.append(
            FleetRow(
                name=info.name,
                status=info.status.value,
                pid=info.pid,
                uptime_s=info.uptime_s,
                restarts=info.restarts,
                cpu_percent=info.cpu_percent,
                rss_bytes=info.rss_bytes,
                connections=conns,
                busy=busy,
                idle=(total - busy) if total is not None and busy is not None else None,
                sessions=total,
                last_event=events[-1] if events else None,
                version=info.version,
            )
        )
    rows = frame.instances
    frame.totals = FleetTotals(
        instances=len(rows),
        running=sum(1 for r in rows if r.status == "running"),
        cpu_percent=sum(r.cpu_percent or 0.0 for r in rows),
        rss_bytes=sum(r.rss_bytes or 0 for r in rows),
        busy=sum(r.busy or 0 for r in rows),
        sessions=sum(r.sessions or 0 for r in rows),
    )
    return frame
