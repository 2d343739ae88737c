"""The host agent: one Ray actor per node, a local ocm on its host.

It holds an `AsyncManager` on the host's own OCM_HOME (from the environment the node was
started with), so its instances have the same keepers, registry, passwords and logs as an
`ocm start` typed on that host. Keepers are detached from the actor: when the actor dies,
its instances keep running and stay supervised, and the next agent on that host adopts them
from the registry (each process identity-checked by PID, start time and command line).

The class needs no Ray to import; `link.py` wraps it with `ray.remote` (detached, named,
pinned to its node, never restarted by Ray: the driver reconciles instead).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from typing import Any

import psutil

from ..errors import OcmError
from ..instances import lifecycle
from ..instances import spec as specs
from ..instances.fleet import Fleet
from ..instances.inventory import list_instances, status_report
from ..instances.logs import tail_across
from ..models import InstanceInfo, Status
from ..settings import Settings

#: Statuses that count as an instance the host runs (placement counts them).
LIVE = (Status.RUNNING, Status.STARTING, Status.UNHEALTHY, Status.STOPPING)


class HostAgent:
    """One per Ray node. Every method is a coroutine: Ray runs them on the actor's loop,
    and the blocking lifecycle work goes to threads."""

    def __init__(self, node_id: str, address: str) -> None:
        self.node_id = node_id
        self.address = address  # the node's own address: instances bind there
        self.fleet = Fleet(Settings.load())

    async def hello(self) -> dict[str, Any]:
        """Who and where it is, its room, and the live instances of its registry (adopted:
        each server and keeper identity-checked)."""
        infos = await list_instances(self.fleet, include_foreign=False, measure_cpu=False)
        return {
            "node_id": self.node_id,
            "address": self.address,
            "hostname": socket.gethostname(),
            "home": str(self.fleet.settings.home),
            "pid": os.getpid(),
            "free_bytes": psutil.virtual_memory().available,
            "instances": [self._describe(i) for i in infos if i.status in LIVE],
        }

    async def start(
        self,
        names: Sequence[str],
        *,
        directory: str,
        env: Sequence[str] = (),
        timeout: float = lifecycle.DEFAULT_START_TIMEOUT,
    ) -> list[dict[str, Any]]:
        """Start instances with these names, bound to the node's address, password on
        (all or nothing, as `ocm start`)."""
        try:
            requested = [
                spec
                for name in names
                for spec in specs.build_specs(
                    name=name, count=1, directory=directory, hostname=self.address, env=env
                )
            ]
            started = await asyncio.to_thread(
                lifecycle.start, self.fleet, requested, timeout=timeout
            )
        except OcmError as exc:
            raise type(exc)(f"on {self.address}: {exc}") from None
        return await self._infos(started)

    async def stop(self, names: Sequence[str], timeout: float) -> list[dict[str, Any]]:
        done = await asyncio.to_thread(lifecycle.stop, self.fleet, names, timeout=timeout)
        return [r.to_dict() for r in done]

    async def stop_all(self, timeout: float) -> list[dict[str, Any]]:
        done = await asyncio.to_thread(lifecycle.stop, self.fleet, all=True, timeout=timeout)
        return [r.to_dict() for r in done]

    async def restart(self, names: Sequence[str], timeout: float) -> list[dict[str, Any]]:
        again = await asyncio.to_thread(lifecycle.restart, self.fleet, names, timeout=timeout)
        return await self._infos(again)

    async def forget(self, names: Sequence[str]) -> list[str]:
        return await asyncio.to_thread(lifecycle.remove, self.fleet, names, force=True)

    async def logs(self, name: str, lines: int) -> list[str]:
        record = await asyncio.to_thread(self.fleet.resolve, name)
        path = self.fleet.settings.log_path(record.name)
        return await asyncio.to_thread(tail_across, path, lines)

    async def status(self, name: str) -> dict[str, Any]:
        return (await status_report(self.fleet, name)).to_dict()

    async def _infos(self, names: Sequence[str]) -> list[dict[str, Any]]:
        infos = await list_instances(
            self.fleet, include_foreign=False, measure_cpu=False, names=names
        )
        return [self._describe(i) for i in infos]

    def _describe(self, info: InstanceInfo) -> dict[str, Any]:
        """An instance for the driver: where it is and its password (the driver stores it
        0600; it travels inside the cluster only)."""
        record = self.fleet.registry.get(info.name)
        return {
            "name": info.name,
            "url": info.url,
            "port": info.port,
            "version": info.version,
            "status": info.status.value,
            "pid": info.pid,
            "directory": info.dir,
            "password": self.fleet.password(record),
            "node_id": self.node_id,
        }
