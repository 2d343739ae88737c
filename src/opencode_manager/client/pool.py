"""One HTTP client per facade, and the one factory of clients for OpenCode servers.

An `AsyncManager` owns a `Fleet`, which owns one `HttpPool`: every call the library makes to
a server (tasks, batches, sessions, the monitor, the fleet view, doctor, status) goes through
the same `httpx.AsyncClient`, so connections are reused across calls and instances, and a
transport given to the facade (`AsyncManager(settings, transport=httpx.MockTransport(...))`)
reaches every one of them: that is how the runner and the batch are tested without a server.

The client is made on first use inside the running event loop, since its connections belong
to that loop (the CLI runs one `asyncio.run` per command, `Manager` a loop of its own), and
closed with the facade (`AsyncManager.aclose`). Used from another loop (a facade reused
across two `asyncio.run`), it starts over with a fresh client there.

`client(endpoint)` is the only place a client for a server is made for the library: it asks
`dialect.client_for` for the endpoint's line (OpenCode 1.x, or 2.x's `/api/*`), so nothing
above `client/` changes with the line.
"""

from __future__ import annotations

import asyncio

import httpx

from .dialect import client_for
from .endpoint import Endpoint
from .shells import AsyncOpencodeClient
from .transport import async_http


class HttpPool:
    """The facade's one HTTP client (made lazily in the running loop) and its clients."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.transport = transport
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def open(self) -> bool:
        """Whether a client was made and not closed yet."""
        return self._http is not None

    def http(self) -> httpx.AsyncClient:
        """The shared client, made on first use in the running loop."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop or self._http.is_closed:
            # A client of another loop cannot be used (nor closed) here: its loop is gone.
            self._http = async_http(self.transport)
            self._loop = loop
        return self._http

    def client(self, endpoint: Endpoint, *, timeout: float | None = None) -> AsyncOpencodeClient:
        """A client for one server over the shared connections. `timeout`: the caller's
        own deadline for each call (a probe's), instead of the OCM_HTTP_TIMEOUT setting's."""
        return client_for(endpoint, http=self.http(), timeout=timeout)

    async def aclose(self) -> None:
        http, loop = self._http, self._loop
        self._http = self._loop = None
        if http is None:
            return
        if loop is not asyncio.get_running_loop():
            return  # made in a loop that is gone: nothing of it can be closed here
        await http.aclose()
