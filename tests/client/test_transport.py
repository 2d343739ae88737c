"""How ocm's HTTP clients are made (client/transport.py, client/pool.py): plain http never
loads the CA bundle; https gets a verifying transport, made once, at its first request."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest

from opencode_manager.client import Endpoint, transport
from opencode_manager.client.pool import HttpPool


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound but not listening: a connection there is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_plain_http_needs_no_tls_and_https_gets_one_verifying_transport(
    refused_port: int,
) -> None:
    async def main() -> tuple[object, object, object]:
        http = transport.async_http()
        schemes = http._transport
        assert isinstance(schemes, transport._AsyncSchemes)
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{refused_port}/global/health")
        plain_only = schemes._tls
        for _ in range(2):
            with pytest.raises(httpx.ConnectError):
                await http.get(f"https://127.0.0.1:{refused_port}/global/health")
        first = schemes._tls
        with pytest.raises(httpx.ConnectError):
            await http.get(f"https://127.0.0.1:{refused_port}/")
        await http.aclose()
        return plain_only, first, schemes._tls

    plain_only, first, again = asyncio.run(main())
    assert plain_only is None
    assert isinstance(first, httpx.AsyncHTTPTransport)
    assert again is first


def test_the_blocking_twin_routes_the_same_way(refused_port: int) -> None:
    with transport.blocking_http() as http:
        schemes = http._transport
        assert isinstance(schemes, transport._Schemes)
        with pytest.raises(httpx.ConnectError):
            http.get(f"http://127.0.0.1:{refused_port}/")
        assert schemes._tls is None
        with pytest.raises(httpx.ConnectError):
            http.get(f"https://127.0.0.1:{refused_port}/")
        assert schemes._tls is not None


def test_the_pool_makes_one_client_per_loop_and_closes_it() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json={"healthy": True})

    shared = HttpPool(httpx.MockTransport(handler))
    endpoint = Endpoint("http://127.0.0.1:1", password="pw", name="oc-1")

    async def main() -> httpx.AsyncClient:
        a = shared.client(endpoint)
        b = shared.client(Endpoint("http://127.0.0.1:2", name="oc-2"), timeout=1.0)
        assert a._http is b._http  # one client, every server
        await asyncio.gather(a.health(), b.health())
        http = a._http
        await shared.aclose()
        return http

    http = asyncio.run(main())
    assert http.is_closed
    assert not shared.open
    # Each request carries its own server's credentials.
    assert sorted(s[:6] for s in seen) == ["", "Basic "]
