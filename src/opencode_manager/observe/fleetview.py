"""A snapshot of the whole fleet, for `ocm top` and the metrics (mostly reads, in parallel)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx

from .. import process
from ..client import AsyncOpencodeClient, http_options
from ..errors import ServerError
from ..instances import probe
from ..models import Status

if TYPE_CHECKING:
    from ..manager import Manager


async def _sessions(manager: Manager, names: list[str]) -> dict[str, tuple[int, int]]:
    """(busy, total) sessions per instance, in its project directory."""
    async with httpx.AsyncClient(**http_options(3.0)) as http:

        async def one(name: str) -> tuple[str, tuple[int, int] | None]:
            record = manager.registry.get(name)
            endpoint = manager.endpoint(record)
            if endpoint is None:
                return name, None
            client = AsyncOpencodeClient(endpoint, http=http)
            try:
                listed, busy = await asyncio.gather(
                    client.sessions(record.spec.dir), client.session_status(record.spec.dir)
                )
            except ServerError:
                return name, None
            return name, (len(busy), len(listed))

        pairs = await asyncio.gather(*(one(n) for n in names))
    return {name: counts for name, counts in pairs if counts is not None}


def snapshot(manager: Manager) -> dict[str, Any]:
    """Per instance: status, uptime, restarts, CPU, RSS, connections, sessions, last event."""
    infos = manager.instances(include_foreign=False)
    live = [i.name for i in infos if i.status in (Status.RUNNING, Status.UNHEALTHY)]
    sessions = asyncio.run(_sessions(manager, live)) if live else {}
    records = {r.name: r for r in manager.records()}
    rows: list[dict[str, Any]] = []
    for info in infos:
        record = records.get(info.name)
        server = process.verified(record.server) if record else None
        conns = probe.connections(server).get("ESTABLISHED", 0) if server else None
        busy, total = sessions.get(info.name, (None, None))
        events = manager.registry.events(info.name, limit=1)
        rows.append(
            {
                "name": info.name,
                "status": info.status.value,
                "pid": info.pid,
                "uptime_s": info.uptime_s,
                "restarts": info.restarts,
                "cpu_percent": info.cpu_percent,
                "rss_bytes": info.rss_bytes,
                "connections": conns,
                "busy": busy,
                "idle": (total - busy) if total is not None and busy is not None else None,
                "sessions": total,
                "last_event": events[-1] if events else None,
            }
        )
    totals = {
        "instances": len(rows),
        "running": sum(1 for r in rows if r["status"] == "running"),
        "cpu_percent": sum(r["cpu_percent"] or 0.0 for r in rows),
        "rss_bytes": sum(r["rss_bytes"] or 0 for r in rows),
        "busy": sum(r["busy"] or 0 for r in rows),
        "sessions": sum(r["sessions"] or 0 for r in rows),
    }
    return {"instances": rows, "totals": totals}
