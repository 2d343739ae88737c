"""The monitor against fake event servers (no OpenCode): merging, and losing a stream."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import cast

import pytest

from opencode_manager.observe.monitor import Monitor, Received
from opencode_manager.testing import fleet_of

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
