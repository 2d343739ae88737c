"""One event stream per server and directory, shared by every task that follows a turn there.

A batch runs many tasks on few instances. Each task used to open its own `/event`
subscription and close it when the turn ended; OpenCode 1.18.33 gets slower with every
subscription that has come and gone (bench/NOTES.md), so a long batch slowed down. The hub
keeps one reconnecting stream (`follow_events`) per (server, directory) for as long as it
lives, and fans every event out to the queues of the tasks subscribed at that moment.

A subscriber sees what a stream of its own would have shown from the moment it subscribed:
the events, the synthetic `ocm.disconnected` / `ocm.reconnected` marks (and, if it
subscribes while the stream is down, an `ocm.disconnected` at once), and a final error (a
401) as the last item.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..deadline import stop_child
from ..errors import ServerError
from .events import DISCONNECTED, RECONNECTED
from .shells import AsyncOpencodeClient
from .types import Event

Item = Event | BaseException


@dataclass
class _Stream:
    """One shared subscription and who listens to it now."""

    subscribers: set[asyncio.Queue[Item]] = field(default_factory=set)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    down: Event | None = None  # the DISCONNECTED mark while the stream is lost
    pump: asyncio.Task[None] | None = None

    def send(self, item: Item) -> None:
        for queue in list(self.subscribers):
            queue.put_nowait(item)


class EventHub:
    """Shared event streams, closed together by `aclose` (or `async with`)."""

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str | None], _Stream] = {}

    async def feed(
        self,
        client: AsyncOpencodeClient,
        directory: str | None,
        queue: asyncio.Queue[Item],
        connected: asyncio.Event,
    ) -> None:
        """Put the events of `directory` on `client`'s server into `queue` until cancelled;
        set `connected` once the stream is up (or cannot be had)."""
        key = (client.endpoint.base_url, client.stream_scope(directory))
        stream = self._streams.get(key)
        if stream is None or stream.pump is None or stream.pump.done():
            stream = _Stream()
            self._streams[key] = stream
            stream.pump = asyncio.create_task(self._pump(client, directory, stream))
        stream.subscribers.add(queue)
        try:
            if stream.down is not None:
                queue.put_nowait(stream.down)
            await stream.connected.wait()
            connected.set()
            await asyncio.Event().wait()  # until the task's turn is over and it cancels us
        finally:
            stream.subscribers.discard(queue)
            connected.set()

    async def _pump(
        self, client: AsyncOpencodeClient, directory: str | None, stream: _Stream
    ) -> None:
        try:
            async for event in client.events(directory, reconnect=True):
                stream.connected.set()
                if event.type == DISCONNECTED:
                    stream.down = event
                elif event.type == RECONNECTED:
                    stream.down = None
                stream.send(event)
        except ServerError as exc:
            stream.send(exc)
        finally:
            stream.connected.set()  # nobody waits for a stream that cannot be had

    async def aclose(self) -> None:
        pumps = [s.pump for s in self._streams.values() if s.pump is not None]
        self._streams.clear()
        await asyncio.gather(*(stop_child(pump) for pump in pumps))

    async def __aenter__(self) -> EventHub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
