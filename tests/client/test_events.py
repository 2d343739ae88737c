"""The one SSE reader with reconnect (`client.events.reconnecting`), used by the task runner's
streams (`follow_events`) and by the monitor: pure with a scripted `connect` and a recorded
`sleep`, then over `httpx.MockTransport` against the fake OpenCode (no server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from opencode_manager.client import Endpoint
from opencode_manager.client.events import (
    DISCONNECTED,
    RECONNECTED,
    follow_events,
    reconnecting,
    stream_events,
)
from opencode_manager.client.pool import HttpPool
from opencode_manager.client.types import Event
from opencode_manager.errors import ServerRefused, ServerUnreachable
from opencode_manager.testing.opencode import FakeOpencode, transport

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

URL = "http://127.0.0.1:4101"


def _scripted(*attempts: list[str] | Exception) -> Callable[[], AsyncIterator[Event]]:
    """A `connect` whose n-th connection yields events of these types, then ends (a list),
    or fails at once (an exception); after the last, a connection that never ends."""
    queue = list(attempts)

    async def connect() -> AsyncIterator[Event]:
        attempt = queue.pop(0) if queue else None
        if isinstance(attempt, Exception):
            raise attempt
        for kind in attempt or []:
            yield Event(kind, {})
        if attempt is None:
            await asyncio.Event().wait()

    return connect


async def _take(events: AsyncIterator[Event], count: int) -> list[Event]:
    got = []
    async for event in events:
        got.append(event)
        if len(got) == count:
            break
    return got


async def test_a_lost_stream_is_marked_once_then_reconnected_with_backoff() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    connect = _scripted(
        ["a", "b"],  # then the stream ends
        ServerUnreachable("connection refused"),
        ServerUnreachable("connection refused"),
        ServerUnreachable("connection refused"),
        ["c"],  # back, then ended again
        ["d"],
    )
    got = await _take(reconnecting(connect, max_delay=0.3, sleep=sleep), 8)
    assert [(e.type, e.properties.get("error")) for e in got] == [
        ("a", None), ("b", None),
        (DISCONNECTED, "stream ended"),  # once, however many attempts fail
        (RECONNECTED, None), ("c", None),
        (DISCONNECTED, "stream ended"),
        (RECONNECTED, None), ("d", None),
    ]  # fmt: skip
    assert slept == [0.1, 0.2, 0.3, 0.3, 0.1]  # doubled, capped, reset after a reconnect


async def test_a_401_is_final_unless_the_caller_says_otherwise() -> None:
    async def sleep(seconds: float) -> None:
        return None

    refused = ServerRefused("oc-1: 401 unauthorized", status_code=401)
    with pytest.raises(ServerRefused):
        await _take(reconnecting(_scripted(refused), sleep=sleep), 1)
    monitor_like = reconnecting(_scripted(refused, ["a"]), final=lambda exc: False, sleep=sleep)
    got = await _take(monitor_like, 3)
    assert [e.type for e in got] == [DISCONNECTED, RECONNECTED, "a"]
    assert got[0].properties == {"error": "oc-1: 401 unauthorized"}


async def test_follow_events_over_the_fake_opencode_survives_a_dropped_stream() -> None:
    """The runner's streams: `follow_events` on one server, in process."""
    server = FakeOpencode(URL, password="pw")
    pool = HttpPool(transport(server))
    endpoint = Endpoint(url=URL, password="pw", name="oc-1", timeout=1.0)
    http = pool.client(endpoint)._http
    events = follow_events(http, endpoint, directory=server.directory, stream=stream_events)
    got: list[str] = []

    async def follow() -> None:
        async for event in events:
            got.append(event.type)
            if got == ["server.connected"]:
                server.emit("session.idle", {"sessionID": "s-1"})
            elif got[-1] == "session.idle" and got.count("session.idle") == 1:
                server.drop_streams()  # no event says so: the connection just ends
            elif got[-1] == RECONNECTED:
                server.emit("session.idle", {"sessionID": "s-2"})
            elif got.count("session.idle") == 2:
                return

    await asyncio.wait_for(follow(), 10)
    assert got == ["server.connected", "session.idle", DISCONNECTED, RECONNECTED,
                   "server.connected", "session.idle"]  # fmt: skip
    await server.aclose()
    await pool.aclose()
