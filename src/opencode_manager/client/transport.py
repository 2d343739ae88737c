"""How ocm's HTTP clients are built: the one place an httpx client is made.

Loading the system's CA bundle for TLS costs 20-35 ms (over 100 ms on a loaded machine) per
client, a good part of a one-shot command like `ocm run`, and almost every server ocm talks to
is a plain-http loopback one. So the clients made here route by the request's scheme: plain
http goes over a transport that never does TLS (no CA bundle), and https (a remote instance
behind a TLS proxy) over a verifying transport built at the first https request, once. No
flag has to know beforehand whether some server in the fleet speaks TLS, and an http
request can never end up on a connection without verification (redirects are not followed,
and there is no proxy: `trust_env=False`).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

CONNECT_TIMEOUT = 5.0  # a loopback connect is instant even to a stopped server (backlog)
#: No cap on connections: one client serves a whole facade, where every task's event stream
#: holds a connection as long as its turn runs (each used to have a client of its own).
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=32)


def _options(timeout: float | httpx.Timeout | None) -> dict[str, Any]:
    from ..settings import HTTP_TIMEOUT

    default = httpx.Timeout(HTTP_TIMEOUT, connect=CONNECT_TIMEOUT)
    return {
        "timeout": default if timeout is None else timeout,
        "trust_env": False,  # loopback servers must not go through a proxy
    }


class _AsyncSchemes(httpx.AsyncBaseTransport):
    """Plain http without TLS; https on a verifying transport made at the first https call."""

    def __init__(self) -> None:
        self._plain = httpx.AsyncHTTPTransport(verify=False, trust_env=False, limits=LIMITS)
        self._tls: httpx.AsyncHTTPTransport | None = None
        self._making: asyncio.Lock | None = None

    async def _secure(self) -> httpx.AsyncHTTPTransport:
        if self._tls is None:
            self._making = self._making or asyncio.Lock()
            async with self._making:
                if self._tls is None:
                    # Reading the CA bundle blocks for tens of ms: not in the event loop.
                    self._tls = await asyncio.to_thread(
                        httpx.AsyncHTTPTransport, trust_env=False, limits=LIMITS
                    )
        return self._tls

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            return await (await self._secure()).handle_async_request(request)
        return await self._plain.handle_async_request(request)

    async def aclose(self) -> None:
        await self._plain.aclose()
        if self._tls is not None:
            await self._tls.aclose()


class _Schemes(httpx.BaseTransport):
    """The blocking twin of `_AsyncSchemes`."""

    def __init__(self) -> None:
        self._plain = httpx.HTTPTransport(verify=False, trust_env=False, limits=LIMITS)
        self._tls: httpx.HTTPTransport | None = None
        self._making = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            with self._making:
                if self._tls is None:
                    self._tls = httpx.HTTPTransport(trust_env=False, limits=LIMITS)
            return self._tls.handle_request(request)
        return self._plain.handle_request(request)

    def close(self) -> None:
        self._plain.close()
        if self._tls is not None:
            self._tls.close()


def async_http(
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float | httpx.Timeout | None = None,
) -> httpx.AsyncClient:
    """An asyncio HTTP client over `transport` (a test's `httpx.MockTransport`, say), else
    over real connections routed by scheme. `timeout`: the client's default deadline (every
    call of ours sets its own on the request)."""
    return httpx.AsyncClient(transport=transport or _AsyncSchemes(), **_options(timeout))


def blocking_http(
    transport: httpx.BaseTransport | None = None,
    timeout: float | httpx.Timeout | None = None,
) -> httpx.Client:
    """The blocking twin of `async_http` (the sync `OpencodeClient`'s)."""
    return httpx.Client(transport=transport or _Schemes(), **_options(timeout))
