"""One merged live stream of the events of many instances.

Each instance is watched on its server-wide stream (1.x ``/global/event``, every directory it
serves; 2.x ``/api/event``, translated by the client into the same events), which is
re-resolved from the registry at every reconnect, so a restarted instance (new PID, maybe new
port) is picked up again. OpenCode keeps no event history, so after a reconnect the session
states are re-read over REST and the differences reported (``ocm.resync``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import process
from ..client.events import DISCONNECTED, RECONNECTED, reconnecting
from ..client.types import Event, as_dict
from ..errors import OcmError, ServerError, ServerUnreachable
from ..instances.fleet import Fleet
from ..models import InstanceRecord, State
from ..redaction import redact_data
from .eventview import status_changes

MAX_BACKOFF = 5.0
RESCAN_INTERVAL = 1.0


@dataclass(frozen=True)
class Received:
    """An event with where and when we got it."""

    instance: str
    event: Event
    received_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"instance": self.instance, "received_at": self.received_at, **self.event.to_dict()}


@dataclass
class _Watch:
    name: str
    statuses: dict[str, str] = field(default_factory=dict)  # session -> busy/retry
    directories: set[str] = field(default_factory=set)
    attached_once: bool = False
    record: InstanceRecord | None = None  # where the current connection goes


def _never_final(exc: ServerError) -> bool:
    """The monitor retries even a 401: a restarted instance may have a new password."""
    return False


def _live(record: InstanceRecord) -> bool:
    if record.spec.remote:  # watched while recorded; its stream says whether it answers
        return record.state is State.RUNNING
    return record.state in (State.RUNNING, State.STARTING) and process.is_alive(record.server)


class Monitor:
    def __init__(
        self,
        fleet: Fleet,
        refs: Sequence[str] = (),
        *,
        follow_new: bool = False,
        queue_size: int = 10_000,
    ) -> None:
        self.fleet = fleet
        self.names = [fleet.resolve(ref).name for ref in dict.fromkeys(refs)]
        self.follow_new = follow_new or not refs
        self.queue: asyncio.Queue[Received] = asyncio.Queue(maxsize=queue_size)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def events(self) -> AsyncIterator[Received]:
        """Every event of every watched instance, as it arrives (until cancelled)."""
        for name in self._targets():
            self._spawn(name)
        rescanner = asyncio.create_task(self._rescan()) if self.follow_new else None
        try:
            while True:
                yield await self.queue.get()
        finally:
            for task in [*self._tasks.values(), *([rescanner] if rescanner else [])]:
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _targets(self) -> list[str]:
        if self.names:
            return self.names
        return [r.name for r in self.fleet.records() if _live(r)]

    def _spawn(self, name: str) -> None:
        if name not in self._tasks:
            self._tasks[name] = asyncio.create_task(self._watch(_Watch(name)))

    async def _rescan(self) -> None:
        """Pick up instances started after the monitor (--follow-new)."""
        while True:
            await asyncio.sleep(RESCAN_INTERVAL)  # periodic registry scan
            for record in self.fleet.records():
                if record.name not in self._tasks and _live(record):
                    self._spawn(record.name)

    async def _emit(self, name: str, event: Event) -> None:
        # What an agent printed (a tool's output, the text of a part) may hold a secret.
        secrets = self.fleet.secrets.values()
        if secrets:
            event = Event(event.type, redact_data(event.properties, secrets), event.directory)
        await self.queue.put(Received(name, event, time.time()))

    async def _watch(self, watch: _Watch) -> None:
        """Follow one instance across reconnects (client.events.reconnecting, the one SSE
        reader with reconnect): the marks it gives become `ocm.attached`, `ocm.reconnected`
        (with a resync over REST) and `ocm.disconnected`."""
        events = reconnecting(lambda: self._connect(watch), max_delay=MAX_BACKOFF,
                              final=_never_final)  # fmt: skip
        async for event in events:
            if event.type == DISCONNECTED:
                await self._emit(watch.name, event)
                continue
            if (event.type == RECONNECTED or not watch.attached_once) and watch.record:
                await self._attached(watch, watch.record)
            if event.type == RECONNECTED:
                continue
            self._track(watch, event)
            await self._emit(watch.name, event)

    async def _connect(self, watch: _Watch) -> AsyncIterator[Event]:
        """One connection to the instance where the registry says it is now (a restarted
        one may have a new port or password)."""
        try:
            record = self.fleet.resolve(watch.name)
            endpoint = self.fleet.endpoint(record) if _live(record) else None
        except OcmError as exc:
            raise ServerUnreachable(str(exc), instance=watch.name) from exc
        if endpoint is None:
            raise ServerUnreachable("instance is not running", instance=watch.name)
        watch.record = record
        async for event in self.fleet.client(endpoint).events(global_stream=True):
            yield event

    async def _attached(self, watch: _Watch, record: InstanceRecord) -> None:
        if not watch.attached_once:
            watch.attached_once = True
            watch.directories.add(record.spec.dir)
            await self._emit(watch.name, Event("ocm.attached", {"url": record.url}))
            return
        await self._emit(watch.name, Event("ocm.reconnected", {"url": record.url}))
        endpoint = self.fleet.endpoint(record)
        after: dict[str, str] = {}
        if endpoint is not None:
            client = self.fleet.client(endpoint)
            for directory in sorted(watch.directories | {record.spec.dir}):
                try:
                    states = await client.session_status(directory)
                except ServerError:
                    continue
                for session, state in states.items():
                    after[session] = str(as_dict(state).get("type", "busy"))
        changes = status_changes(watch.statuses, after)
        watch.statuses = after
        await self._emit(watch.name, Event("ocm.resync", {"changes": changes}))

    @staticmethod
    def _track(watch: _Watch, event: Event) -> None:
        if event.directory and event.directory != "global":
            watch.directories.add(event.directory)
        if event.type == "session.status":
            sid = event.session_id
            state = as_dict(event.properties.get("status")).get("type")
            if sid and state == "idle":
                watch.statuses.pop(sid, None)
            elif sid and isinstance(state, str):
                watch.statuses[sid] = state


async def watch(
    fleet: Fleet, refs: Sequence[str] = (), *, follow_new: bool = False
) -> AsyncIterator[Received]:
    """`ocm monitor`: one merged live stream of the events of these instances (every live
    one, and those started later, when none is named), until cancelled."""
    monitor = await asyncio.to_thread(Monitor, fleet, refs, follow_new=follow_new)
    async for item in monitor.events():
        yield item
