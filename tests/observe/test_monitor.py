"""The monitor against fake event servers (no OpenCode): merging, losing a stream, and
resyncing over REST; over the network (`testing.sse`) and in-process (`testing.opencode`)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from opencode_manager.instances.fleet import Fleet
from opencode_manager.observe.monitor import Monitor, Received
from opencode_manager.testing import StandIn, fleet_of
from opencode_manager.testing.opencode import FakeOpencode, Hang, transport

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def _fake(count: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager.testing.sse", "serve", "--count", str(count)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.strip().rsplit(" ", 1)[-1]


@pytest.fixture
def fakes() -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    servers = [_fake(30), _fake(30)]
    yield servers
    for proc, _ in servers:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def _take(monitor: Monitor, wanted: int) -> list[Received]:
    seen: list[Received] = []
    async for item in monitor.events():
        seen.append(item)
        if len(seen) >= wanted:
            break
    return seen


async def test_streams_are_merged_and_labelled(
    fakes: list[tuple[subprocess.Popen[str], str]], tmp_path: Path
) -> None:
    fleet = fleet_of(tmp_path / "ocm", [("a", fakes[0][1], fakes[0][0].pid),
                                         ("b", fakes[1][1], fakes[1][0].pid)])  # fmt: skip
    seen = await asyncio.wait_for(_take(Monitor(fleet, ["a", "b"]), 64), 30)
    by_instance = {"a": 0, "b": 0}
    for item in seen:
        by_instance[item.instance] += 1
    assert by_instance["a"] >= 30
    assert by_instance["b"] >= 30
    assert {i.event.type for i in seen} >= {"ocm.attached", "message.part.delta", "session.status"}
    fleet.close()


async def test_a_lost_stream_is_reported_and_retried(
    fakes: list[tuple[subprocess.Popen[str], str]], tmp_path: Path
) -> None:
    proc, url = fakes[0]
    fleet = fleet_of(tmp_path / "ocm", [("a", url, proc.pid)])
    monitor = Monitor(fleet, ["a"])
    stream = cast(AsyncGenerator[Received, None], monitor.events())  # a generator: closable
    kinds: list[str] = []

    async def follow() -> None:
        async for item in stream:
            kinds.append(item.event.type)
            if len([k for k in kinds if k == "message.part.delta"]) >= 10 and proc.poll() is None:
                proc.kill()  # the server goes away mid-stream
            if item.event.type == "ocm.disconnected":
                return

    await asyncio.wait_for(follow(), 30)
    await stream.aclose()
    assert kinds[0] == "ocm.attached"
    assert kinds[-1] == "ocm.disconnected"
    fleet.close()


# -- in-process: fake OpenCode servers over the fleet's one HTTP client -------------------------
URLS = {"a": "http://127.0.0.1:4101", "b": "http://127.0.0.1:4102"}


@pytest.fixture
async def fakes_in_process(
    tmp_path: Path, stand_in: StandIn
) -> AsyncIterator[tuple[Fleet, dict[str, FakeOpencode]]]:
    servers = {
        n: FakeOpencode(u, directory="/p", script=lambda _: [Hang()]) for n, u in URLS.items()
    }
    fleet = fleet_of(tmp_path / "ocm", [(n, u, stand_in.pid) for n, u in URLS.items()],
                     transport=transport(*servers.values()), directory="/p")  # fmt: skip
    yield fleet, servers
    for server in servers.values():
        await server.aclose()
    await fleet.aclose()


async def _until(condition: Any, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.005)  # polling the fakes' state, with a deadline

    await asyncio.wait_for(wait(), timeout)


async def _next(stream: AsyncGenerator[Received, None], *kinds: str) -> Received:
    """The next item of one of these kinds (what else comes meanwhile is skipped)."""
    while True:
        item = await asyncio.wait_for(anext(stream), 5)
        if item.event.type in kinds:
            return item


async def test_in_process_streams_are_merged_and_labelled(
    fakes_in_process: tuple[Fleet, dict[str, FakeOpencode]],
) -> None:
    fleet, servers = fakes_in_process
    stream = cast(AsyncGenerator[Received, None], Monitor(fleet, ["a", "b"]).events())
    attached = {(await _next(stream, "ocm.attached")).instance for _ in range(2)}
    assert attached == {"a", "b"}
    await _until(lambda: all(s.streams for s in servers.values()))
    servers["a"].prompt("work on a")
    servers["b"].prompt("work on b")
    busy: dict[str, str | None] = {}
    while len(busy) < 2:
        item = await _next(stream, "session.status")
        busy[item.instance] = item.event.directory
    assert busy == {"a": "/p", "b": "/p"}  # /global/event frames keep their directory
    await stream.aclose()


async def test_in_process_a_lost_stream_is_reported_then_resynced_over_rest(
    fakes_in_process: tuple[Fleet, dict[str, FakeOpencode]],
) -> None:
    """OpenCode has no replay: after a reconnect the monitor reads the sessions' states
    over REST and reports what changed while it was away (`ocm.resync`)."""
    fleet, servers = fakes_in_process
    server = servers["a"]
    stream = cast(AsyncGenerator[Received, None], Monitor(fleet, ["a"]).events())
    await _next(stream, "ocm.attached")
    await _until(lambda: server.streams > 0)
    server.crash()  # the stream ends; nothing answers for a moment
    await _next(stream, "ocm.disconnected")
    server.restart()
    turn = server.prompt("began while the monitor was away")  # busy: seen only over REST
    assert (await _next(stream, "ocm.reconnected")).event.properties == {"url": URLS["a"]}
    resync = await _next(stream, "ocm.resync")
    changes = resync.event.properties["changes"]
    assert changes == [{"session": turn.session_id, "was": "idle", "now": "busy"}]
    await stream.aclose()
