"""Sync and async clients: they mirror only the I/O path and share everything else."""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import operations as ops
from .core import Endpoint, Operation, build_request, read_response, transport_error

T = TypeVar("T")
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class _Base:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def _client_kwargs(self, timeout: float | httpx.Timeout | None) -> dict[str, Any]:
        return {
            "base_url": self.endpoint.base_url,
            "headers": self.endpoint.auth_header(),
            "timeout": DEFAULT_TIMEOUT if timeout is None else timeout,
            "trust_env": False,  # loopback servers must not go through a proxy
        }


class OpencodeClient(_Base):
    """Blocking client for one OpenCode server."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(endpoint)
        self._http = httpx.Client(transport=transport, **self._client_kwargs(timeout))

    def call(self, op: Operation[T], *, timeout: float | None = None) -> T:
        request = build_request(self._http, op)
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
    ) -> None:
        super().__init__(endpoint)
        self._http = httpx.AsyncClient(transport=transport, **self._client_kwargs(timeout))

    async def call(self, op: Operation[T], *, timeout: float | None = None) -> T:
        request = build_request(self._http, op)
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
        await self._http.aclose()

    async def __aenter__(self) -> AsyncOpencodeClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
