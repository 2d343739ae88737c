"""The shared event streams of a batch, over an injected transport that plays a server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from opencode_manager.client import AsyncOpencodeClient, Endpoint
from opencode_manager.client.events import DISCONNECTED, RECONNECTED
from opencode_manager.client.hub import EventHub, Item
from opencode_manager.client.types import Event
from opencode_manager.errors import ServerError

END = "end"  # put on a connection's queue: the server closes that stream


class Server:
    """Every GET /event opens a connection; the test writes events to the open ones."""

    def __init__(self) -> None:
        self.opened: list[tuple[str | None, asyncio.Queue[str]]] = []
        self.status = 200

    async def handle(self, request: httpx.Request) -> httpx.Response:
        directory = request.headers.get("x-opencode-directory")
        if self.status != 200:
            return httpx.Response(self.status, text="no")
        frames: asyncio.Queue[str] = asyncio.Queue()
        self.opened.append((directory, frames))
        frames.put_nowait(json.dumps({"type": "server.connected", "properties": {}}))

        async def body() -> AsyncIterator[bytes]:
            while (data := await frames.get()) != END:
                yield f"data: {data}\n\n".encode()

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    def emit(self, kind: str, directory: str | None = None) -> None:
        for opened_for, frames in self.opened:
            if opened_for == directory:
                frames.put_nowait(json.dumps({"type": kind, "properties": {}}))

    def drop(self) -> None:
        for _, frames in self.opened:
            frames.put_nowait(END)
        self.opened.clear()


async def _next(queue: asyncio.Queue[Item]) -> Item:
    return await asyncio.wait_for(queue.get(), 5)


async def _kinds(queue: asyncio.Queue[Item], count: int) -> list[str]:
    kinds = []
    for _ in range(count):
        item = await _next(queue)
        kinds.append(item.type if isinstance(item, Event) else type(item).__name__)
    return kinds


class Subscriber:
    def __init__(self, hub: EventHub, client: AsyncOpencodeClient, directory: str | None) -> None:
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.task = asyncio.create_task(hub.feed(client, directory, self.queue, self.connected))

    async def up(self) -> None:
        await asyncio.wait_for(self.connected.wait(), 5)

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
def server() -> Server:
    return Server()


def _client(server: Server) -> AsyncOpencodeClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server.handle))
    return AsyncOpencodeClient(Endpoint("http://127.0.0.1:1", name="oc-1"), http=http)


async def _tasks_on_one_directory_share_one_stream(server: Server) -> None:
    client = _client(server)
    async with EventHub() as hub:
        first = Subscriber(hub, client, "/p")
        await first.up()
        assert await _kinds(first.queue, 1) == ["server.connected"]
        second = Subscriber(hub, client, "/p")
        await second.up()
        server.emit("session.idle", "%2Fp")
        assert await _kinds(first.queue, 1) == ["session.idle"]
        assert await _kinds(second.queue, 1) == ["session.idle"]  # only what came after it
        await first.stop()
        server.emit("session.status", "%2Fp")
        assert await _kinds(second.queue, 1) == ["session.status"]
        assert first.queue.empty()
        third = Subscriber(hub, client, "/q")  # another directory: a stream of its own
        await third.up()
        await second.stop()
        await third.stop()
    assert [d for d, _ in server.opened] == ["%2Fp", "%2Fq"]


async def _a_lost_stream_is_marked_for_everyone_and_for_late_comers(server: Server) -> None:
    client = _client(server)
    async with EventHub() as hub:
        first = Subscriber(hub, client, "/p")
        await first.up()
        await _kinds(first.queue, 1)
        server.status = 503  # the server went away: reconnects fail for now
        server.drop()
        assert await _kinds(first.queue, 1) == [DISCONNECTED]
        late = Subscriber(hub, client, "/p")
        await late.up()
        assert await _kinds(late.queue, 1) == [DISCONNECTED]  # it would not know otherwise
        server.status = 200
        assert await _kinds(first.queue, 2) == [RECONNECTED, "server.connected"]
        assert await _kinds(late.queue, 2) == [RECONNECTED, "server.connected"]
        await first.stop()
        await late.stop()


async def _a_refused_stream_ends_with_its_error_and_the_next_task_tries_again(
    server: Server,
) -> None:
    client = _client(server)
    async with EventHub() as hub:
        server.status = 401
        refused = Subscriber(hub, client, "/p")
        await refused.up()  # set even though the stream cannot be had: the prompt goes on
        item = await _next(refused.queue)
        assert isinstance(item, ServerError)
        assert item.status_code == 401
        server.status = 200
        again = Subscriber(hub, client, "/p")
        await again.up()
        assert await _kinds(again.queue, 1) == ["server.connected"]
        await refused.stop()
        await again.stop()
    assert len(server.opened) == 1


async def _closing_the_hub_ends_its_streams(server: Server) -> None:
    client = _client(server)
    hub = EventHub()
    sub = Subscriber(hub, client, "/p")
    await sub.up()
    await hub.aclose()
    await sub.stop()
    assert all(task.done() for task in asyncio.all_tasks() if task is not asyncio.current_task())


def test_tasks_on_one_directory_share_one_stream(server: Server) -> None:
    asyncio.run(_tasks_on_one_directory_share_one_stream(server))


def test_a_lost_stream_is_marked_for_everyone_and_for_late_comers(server: Server) -> None:
    asyncio.run(_a_lost_stream_is_marked_for_everyone_and_for_late_comers(server))


def test_a_refused_stream_ends_with_its_error_and_the_next_task_tries_again(server: Server) -> None:
    asyncio.run(_a_refused_stream_ends_with_its_error_and_the_next_task_tries_again(server))


def test_closing_the_hub_ends_its_streams(server: Server) -> None:
    asyncio.run(_closing_the_hub_ends_its_streams(server))
