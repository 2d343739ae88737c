"""The host agent: one Ray actor per node, a local ocm on its host.

It holds an `AsyncManager` on the host's own OCM_HOME (from the environment the node was
started with), so its instances have the same keepers, registry, passwords and logs as an
`ocm start` typed on that host. Keepers are detached from the actor: when the actor dies,
its instances keep running and stay supervised, and the next agent on that host adopts them
from the registry (each process identity-checked by PID, start time and command line).

The class needs no Ray to import; `link.py` wraps it with `ray.remote` (detached, named,
pinned to its node, never restarted by Ray: the driver reconciles instead).

A start is all or nothing on its host, and undoable from the driver: every instance it
creates carries the driver's tag for that start (`START_TAG` in its spec's environment, so
in the host's registry before its keeper runs), and `discard` with that tag cancels the
start if it is still running (or before it begins), waits for it to end, then stops and
forgets what that tag created here, and nothing else (a same-named instance of another
start or of the host's own user is not touched). Calling it again does nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

import psutil

from ..errors import ConflictError, Interrupted, OcmError
from ..instances import lifecycle
from ..instances import spec as specs
from ..instances.fleet import Fleet, is_live
from ..instances.inventory import list_instances, status_report
from ..instances.logs import tail_across
from ..models import InstanceInfo, InstanceRecord, Status
from ..settings import Settings

#: Statuses that count as an instance the host runs (placement counts them).
LIVE = (Status.RUNNING, Status.STARTING, Status.UNHEALTHY, Status.STOPPING)
#: The variable in a cluster instance's spec (and so its server's environment) that names
#: the driver's start that created it.
START_TAG = "OCM_CLUSTER_START"
#: Tags of undone starts remembered, so that a start that arrives after its undo does nothing.
UNDONE_KEPT = 1000


def started_by(record: InstanceRecord) -> str | None:
    """The tag of the cluster start that created this instance (None: not one)."""
    return dict(record.spec.env).get(START_TAG)


class HostAgent:
    """One per Ray node. Every method is a coroutine: Ray runs them on the actor's loop,
    and the blocking lifecycle work goes to threads."""

    def __init__(self, node_id: str, address: str) -> None:
        self.node_id = node_id
        self.address = address  # the node's own address: instances bind there
        self.fleet = Fleet(Settings.load())
        # Starts in flight by tag: their cancel flag, and an event set when they end.
        self._starts: dict[str, tuple[threading.Event, asyncio.Event]] = {}
        self._undone: dict[str, None] = {}  # tags of starts undone (an ordered set)

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
        tag: str | None = None,
        undo_timeout: float = lifecycle.DEFAULT_STOP_TIMEOUT,
        opencode: str | None = None,
    ) -> list[dict[str, Any]]:
        """Start instances with these names, bound to the node's address, password on: all
        or nothing (a start that fails stops and forgets what it created here, its logs
        kept). `tag` is the driver's name for this start (see `discard`); `opencode`: their
        binary on this host (a version installed here, or an absolute path), kept in their
        spec for restarts; None: the host's resolution order."""
        if tag is not None and tag in self._undone:
            raise Interrupted(f"on {self.address}: this start was undone before it began")
        cancel, ended = threading.Event(), asyncio.Event()
        if tag is not None:
            self._starts[tag] = (cancel, ended)
        try:
            tagged = [*env, f"{START_TAG}={tag}"] if tag is not None else list(env)
            try:
                requested = [
                    spec
                    for name in names
                    for spec in specs.build_specs(
                        name=name,
                        count=1,
                        directory=directory,
                        hostname=self.address,
                        env=tagged,
                        binary=opencode,
                    )
                ]
                started = await asyncio.to_thread(
                    lifecycle.start, self.fleet, requested, timeout=timeout, cancel=cancel
                )
                if cancel.is_set():  # undone just as it finished
                    raise Interrupted(f"start interrupted: {', '.join(started)} undone")
                return await self._infos(started)
            except Exception as exc:
                undone = await asyncio.to_thread(self._undo, names, tag, undo_timeout)
                if not isinstance(exc, OcmError):
                    raise
                message = str(exc)
                for name in undone:  # its row is gone here: point at the log it left
                    message = message.replace(
                        f"see `ocm logs {name}`",
                        f"its log: {self.fleet.settings.log_path(name)} on {self.address}",
                    )
                raise type(exc)(f"on {self.address}: {message}") from None
        finally:
            ended.set()
            if tag is not None:
                self._starts.pop(tag, None)

    async def discard(
        self, names: Sequence[str], tag: str, timeout: float = lifecycle.DEFAULT_STOP_TIMEOUT
    ) -> list[str]:
        """Undo the driver's start `tag`: cancel it if it is still going (or not begun yet),
        wait for it to end, then stop and forget what it created of `names` here. Returns
        what it stopped and forgot; idempotent."""
        self._undone[tag] = None
        while len(self._undone) > UNDONE_KEPT:
            del self._undone[next(iter(self._undone))]
        running = self._starts.get(tag)
        if running is not None:
            running[0].set()  # lifecycle.start stops and forgets what it launched
            await running[1].wait()
        return await asyncio.to_thread(self._undo, names, tag, timeout)

    def _undo(self, names: Sequence[str], tag: str | None, timeout: float) -> list[str]:
        """Stop and forget the instances of `names` that start `tag` created here (blocking)."""
        undone: list[str] = []
        if tag is None:
            return undone  # whose they are cannot be told: leave them
        for name in names:
            record = self.fleet.registry.find(name)
            if record is None or started_by(record) != tag:
                continue
            if is_live(record):
                with contextlib.suppress(ConflictError):  # it ended meanwhile
                    lifecycle.stop(self.fleet, [name], timeout=timeout)
            lifecycle.forget(self.fleet, name)
            undone.append(name)
        return undone

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
