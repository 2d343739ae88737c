"""Server-sent events from OpenCode: decoding (pure) and streaming (httpx-sse).

OpenCode sends only ``data: <json>`` frames: no ids, no event names, so no replay after a
reconnect. ``/event`` frames are ``{"type", "properties"}``; ``/global/event`` wraps them as
``{"directory", "payload": {...}}`` and duplicates changes as ``sync`` payloads, which we drop.
OpenCode 2.x has one stream per server (``/api/event``, ``{"type", "data", "location"}``), which
`stream_events_v2` translates into the same events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import aconnect_sse

from ..errors import ServerError, ServerRefused, ServerUnreachable
from .endpoint import Endpoint
from .types import Event


def decode_event(data: str) -> Event | None:
    """One SSE data payload as an Event; None for frames we ignore (empty, bad JSON, sync)."""
    if not data.strip():
        return None
    try:
        frame = json.loads(data)
    except ValueError:
        return None
    if not isinstance(frame, dict):
        return None
    directory: str | None = None
    if "payload" in frame and isinstance(frame["payload"], dict):
        directory = frame.get("directory") if isinstance(frame.get("directory"), str) else None
        frame = frame["payload"]
    kind = frame.get("type")
    if not isinstance(kind, str) or kind == "sync":
        return None
    props: Any = frame.get("properties")
    return Event(
        type=kind, properties=props if isinstance(props, dict) else {}, directory=directory
    )


async def _frames(
    http: httpx.AsyncClient, endpoint: Endpoint, path: str, headers: dict[str, str]
) -> AsyncIterator[str]:
    """The data of each SSE frame of one connection, until the server ends it."""
    headers = {"accept": "text/event-stream", **endpoint.auth_header(), **headers}
    timeout = httpx.Timeout(10.0, read=None)  # heartbeats every 10-15 s; a read may wait longer
    try:
        async with aconnect_sse(
            http, "GET", endpoint.base_url + path, headers=headers, timeout=timeout
        ) as source:
            response = source.response
            if response.status_code == 401:
                raise ServerRefused(
                    f"{endpoint.name or endpoint.base_url}: 401 unauthorized",
                    instance=endpoint.name,
                    status_code=401,
                )
            if response.status_code >= 400:
                await response.aread()
                raise ServerRefused(
                    f"{endpoint.name or endpoint.base_url}: event stream refused with HTTP "
                    f"{response.status_code}: {response.text[:200]}",
                    instance=endpoint.name,
                    status_code=response.status_code,
                )
            if "text/event-stream" not in response.headers.get("content-type", ""):
                raise ServerRefused(
                    f"{endpoint.name or endpoint.base_url}: {path} is not an event stream here",
                    instance=endpoint.name,
                    status_code=response.status_code,
                )
            async for sse in source.aiter_sse():
                yield sse.data
    except httpx.HTTPError as exc:
        raise ServerUnreachable(
            f"{endpoint.name or endpoint.base_url}: event stream lost ({exc.__class__.__name__})",
            instance=endpoint.name,
        ) from exc


async def stream_events(
    http: httpx.AsyncClient,
    endpoint: Endpoint,
    *,
    directory: str | None = None,
    global_stream: bool = False,
) -> AsyncIterator[Event]:
    """Events from one connection, until the server ends it (no reconnect here)."""
    path = "/global/event" if global_stream else "/event"
    headers: dict[str, str] = {}
    if directory and not global_stream:
        headers["x-opencode-directory"] = quote(directory, safe="")
    async for data in _frames(http, endpoint, path, headers):
        event = decode_event(data)
        if event is not None:
            yield event


async def stream_events_v2(
    http: httpx.AsyncClient,
    endpoint: Endpoint,
    *,
    directory: str | None = None,
    global_stream: bool = False,
) -> AsyncIterator[Event]:
    """OpenCode 2.x's one server-wide stream (`/api/event`: every location, so `directory`
    and `global_stream` change nothing), translated into 1.x events (v2translate.py)."""
    from .v2translate import EventTranslator, decode

    translator = EventTranslator()  # per connection: what it remembers is this stream's
    async for data in _frames(http, endpoint, "/api/event", {}):
        frame = decode(data)
        if isinstance(frame, dict):
            for event in translator.translate(frame):
                yield event


Stream = Callable[..., AsyncIterator[Event]]


RECONNECTED = "ocm.reconnected"  # a synthetic event: the stream was lost and is back
DISCONNECTED = "ocm.disconnected"  # a synthetic event: the stream was lost; retrying


def _refused(exc: ServerError) -> bool:
    """401: retrying with the same credentials cannot help."""
    return exc.status_code == 401


async def reconnecting(
    connect: Callable[[], AsyncIterator[Event]],
    *,
    max_delay: float = 5.0,
    final: Callable[[ServerError], bool] = _refused,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[Event]:
    """The events of one connection after another (`connect()` opens one), with backoff in
    between, marked by synthetic events: `ocm.disconnected` (with the error) once when a
    stream is lost or cannot be opened, `ocm.reconnected` before the first event of the
    next one. The one SSE reader with reconnect: the runner's streams (`follow_events`) and
    the monitor, which opens each connection to where the registry says the instance is now.

    OpenCode keeps no history, so after `ocm.reconnected` a caller must resync what it
    tracks over REST. An error `final` says retrying cannot help (401 by default) is raised.
    """
    delay = 0.1
    lost = False
    while True:
        try:
            async for event in connect():
                if lost:
                    lost = False
                    delay = 0.1
                    yield Event(type=RECONNECTED, properties={})
                yield event
            error = "stream ended"
        except ServerError as exc:
            if final(exc):
                raise
            error = str(exc)
        if not lost:
            lost = True
            yield Event(type=DISCONNECTED, properties={"error": error})
        await sleep(delay)  # backoff before reconnecting
        delay = min(delay * 2, max_delay)


def follow_events(
    http: httpx.AsyncClient,
    endpoint: Endpoint,
    *,
    directory: str | None = None,
    global_stream: bool = False,
    max_delay: float = 5.0,
    stream: Stream = stream_events,
) -> AsyncIterator[Event]:
    """One server's events across reconnects (`reconnecting`)."""
    return reconnecting(
        lambda: stream(http, endpoint, directory=directory, global_stream=global_stream),
        max_delay=max_delay,
    )
