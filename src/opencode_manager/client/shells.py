"""Sync and async clients: they mirror only the I/O path and share everything else."""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import operations as ops
from .core import Endpoint, Operation, build_request, read_response, transport_error

T = TypeVar("T")
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def http_options(timeout: float | httpx.Timeout | None = None) -> dict[str, Any]:
    """Options for the httpx clients behind ours (also for callers sharing one client)."""
    return {
        "timeout": DEFAULT_TIMEOUT if timeout is None else timeout,
        "trust_env": False,  # loopback servers must not go through a proxy
    }


class _Base:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint


class OpencodeClient(_Base):
    """Blocking client for one OpenCode server."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(endpoint)
        # Creating an httpx client costs ~30 ms (TLS context): pass `http` to share one.
        self._owns_http = http is None
        self._http = http or httpx.Client(transport=transport, **http_options(timeout))

    def call(self, op: Operation[T], *, timeout: float | None = None) -> T:
        request = build_request(self._http, self.endpoint, op)
        if timeout is not None:
            request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise transport_error(self.endpoint, op, exc) from exc
        return read_response(self.endpoint, op, response)

    def health(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self.call(ops.health(), timeout=timeout)

    def dispose(self, *, timeout: float | None = None) -> None:
        self.call(ops.dispose(), timeout=timeout)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> OpencodeClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncOpencodeClient(_Base):
    """Asyncio client for one OpenCode server."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(endpoint)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(transport=transport, **http_options(timeout))

    async def call(self, op: Operation[T], *, timeout: float | None = None) -> T:
        request = build_request(self._http, self.endpoint, op)
        if timeout is not None:
            request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise transport_error(self.endpoint, op, exc) from exc
        return read_response(self.endpoint, op, response)

    async def health(self, *, timeout: float | None = None) -> dict[str, Any]:
        return await self.call(ops.health(), timeout=timeout)

    async def dispose(self, *, timeout: float | None = None) -> None:
        await self.call(ops.dispose(), timeout=timeout)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncOpencodeClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
