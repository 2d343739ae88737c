"""The fleet view (`ocm top`, metrics, the dashboard) in-process: its session counts come
over the fleet's one HTTP client from fake OpenCode servers (`testing.opencode`)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from opencode_manager.instances.fleet import Fleet
from opencode_manager.observe import fleetview
from opencode_manager.testing import StandIn, fleet_of
from opencode_manager.testing.opencode import FakeOpencode, Hang, transport

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
def closed_ports() -> Iterator[list[int]]:
    """Loopback ports held bound but not listening: a health check there is refused at
    once, and nothing else can take them meanwhile (the fleet view probes health itself)."""
    held = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        held.append(sock)
    yield [s.getsockname()[1] for s in held]
    for sock in held:
        sock.close()


@pytest.fixture
async def fleet(
    tmp_path: Path, stand_in: StandIn, closed_ports: list[int]
) -> AsyncIterator[tuple[Fleet, dict[str, FakeOpencode]]]:
    urls = {name: f"http://127.0.0.1:{port}" for name, port in zip("ab", closed_ports, strict=True)}
    servers = {
        n: FakeOpencode(u, directory="/p", script=lambda _: [Hang()]) for n, u in urls.items()
    }
    found = fleet_of(tmp_path / "ocm", [(n, u, stand_in.pid) for n, u in urls.items()],
                     transport=transport(*servers.values()), directory="/p")  # fmt: skip
    yield found, servers
    for server in servers.values():
        await server.aclose()
    await found.aclose()


async def test_a_frame_counts_each_instances_sessions(
    fleet: tuple[Fleet, dict[str, FakeOpencode]],
) -> None:
    found, servers = fleet
    servers["a"].prompt("one")
    servers["a"].prompt("two")
    servers["a"].new_session("/p", "idle one")
    servers["a"].prompt("elsewhere", directory="/other")  # another project: not counted
    servers["b"].down = True  # its process lives, its server does not answer
    frame = await fleetview.snapshot(found)
    rows = {row.name: row for row in frame.instances}
    assert (rows["a"].busy, rows["a"].idle, rows["a"].sessions) == (2, 1, 3)
    assert (rows["b"].busy, rows["b"].sessions) == (None, None)
    assert (frame.totals.busy, frame.totals.sessions) == (2, 3)
