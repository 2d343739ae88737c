"""The facade over an injected transport: `AsyncManager(settings, transport=...)` carries
every call to a server through one HTTP client of its own, made in the running loop and
closed with the facade; the fake OpenCode (`testing.opencode`) answers. No OpenCode."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from opencode_manager import AsyncManager, Manager, Settings, TaskOptions, TaskStatus
from opencode_manager.client import pool
from opencode_manager.client import transport as transports
from opencode_manager.testing import StandIn, fleet_of
from opencode_manager.testing.opencode import FakeOpencode, transport

pytestmark = pytest.mark.timeout(30)

URL = "http://127.0.0.1:4101"


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[httpx.AsyncClient]:
    """Every HTTP client the library makes for its calls to servers."""
    clients: list[httpx.AsyncClient] = []

    def counted(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        clients.append(real(transport))
        return clients[-1]

    real = transports.async_http
    monkeypatch.setattr(pool, "async_http", counted)
    return clients


@pytest.fixture
def settings(tmp_path: Path, stand_in: StandIn) -> Settings:
    fleet = fleet_of(tmp_path / "ocm", [("oc-1", URL, stand_in.pid)], directory="/p")
    fleet.close()
    return fleet.settings


def test_one_client_carries_every_call_of_an_async_facade(
    settings: Settings, made: list[httpx.AsyncClient]
) -> None:
    server = FakeOpencode(URL, directory="/p")

    async def main() -> None:
        async with AsyncManager(settings, transport=transport(server)) as ocm:
            record = await ocm.run("hello", TaskOptions(instance="oc-1"))
            assert record.status is TaskStatus.COMPLETED, record.error
            assert record.text == "You said: hello"
            [row] = await ocm.sessions("oc-1")
            assert row.session.id == record.session_id
            assert [m.role for m in await ocm.session_messages(row.session.id)] == [
                "user",
                "assistant",
            ]
            frame = await ocm.top()
            assert frame.instances[0].sessions == 1
            assert ocm.fleet.http_open
        assert not ocm.fleet.http_open  # closed with the facade
        await server.aclose()

    asyncio.run(main())
    assert len(made) == 1
    assert made[0].is_closed


def test_a_facade_used_from_two_loops_makes_a_client_in_each(
    settings: Settings, made: list[httpx.AsyncClient]
) -> None:
    """Connections belong to the loop that opened them: a facade kept across two
    `asyncio.run` starts over in the second."""
    server = FakeOpencode(URL, directory="/p")
    ocm = AsyncManager(settings, transport=transport(server))

    async def one(prompt: str) -> TaskStatus:
        return (await ocm.run(prompt, TaskOptions(instance="oc-1"))).status

    assert asyncio.run(one("first")) is TaskStatus.COMPLETED
    assert asyncio.run(one("second")) is TaskStatus.COMPLETED
    asyncio.run(ocm.aclose())
    assert len(made) == 2
    assert [t.prompt for t in server.turns] == ["first", "second"]


def test_the_sync_facade_closes_its_client_on_its_own_loop(
    settings: Settings, made: list[httpx.AsyncClient]
) -> None:
    server = FakeOpencode(URL, directory="/p")
    with Manager(settings, transport=transport(server)) as ocm:
        record = ocm.run("from sync code", TaskOptions(instance="oc-1"))
        assert record.status is TaskStatus.COMPLETED
        assert ocm.aio.fleet.http_open
    assert not ocm.aio.fleet.http_open
    assert len(made) == 1
    assert made[0].is_closed
