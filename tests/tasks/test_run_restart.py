"""`ocm run` on an instance its keeper is restarting (in-process: a fake OpenCode 1.x behind
the fleet's HTTP client, a keeper stand-in whose argv is a keeper's): the task waits for the
instance to come back instead of failing, and starts again when its server went away while
its session was being made (nothing had been sent)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from opencode_manager import process
from opencode_manager.client import core
from opencode_manager.errors import ConflictError
from opencode_manager.instances.fleet import Fleet
from opencode_manager.instances.launch import port_of
from opencode_manager.lines import PINNED_VERSIONS, Line
from opencode_manager.models import KEEPER_CMD, TaskStatus
from opencode_manager.tasks import dispatch
from opencode_manager.tasks.dispatch import TaskOptions, run_task
from opencode_manager.tasks.store import TaskStore
from opencode_manager.testing import StandIn, fleet_of
from opencode_manager.testing.opencode import FakeOpencode, transport

from helpers import fake_keeper_package, kill_trees, spawn_sleeper

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

URL = "http://127.0.0.1:4101"
PROJECT = "/fake/project"


@dataclass
class Bed:
    fleet: Fleet
    store: TaskStore
    server: FakeOpencode
    first: StandIn  # its server process until the crash

    def restarting(self) -> None:
        """Its keeper saw the server die and will start another after its backoff."""
        self.fleet.registry.mark_restarting("a", last_exit="killed", error="no answer")

    def back(self, pid: int) -> None:
        """The keeper's new server process answers its health check."""
        identity = process.identity_of(pid)
        assert identity is not None
        self.fleet.registry.server_spawned("a", identity)
        self.fleet.registry.mark_running(
            "a",
            url=URL,
            port=port_of(URL),
            version=PINNED_VERSIONS[Line.V1],  # FakeOpencode is 1.x
        )


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "RETRY_PAUSE", 0.0)
    monkeypatch.setattr(dispatch, "RETURN_POLL", 0.01, raising=False)


@pytest.fixture
def keeper(tmp_path: Path) -> Iterator[psutil.Process]:
    proc = spawn_sleeper([sys.executable, "-m", KEEPER_CMD, "a"], cwd=fake_keeper_package(tmp_path))
    yield proc
    kill_trees([proc])


@pytest.fixture
async def bed(tmp_path: Path, keeper: psutil.Process) -> AsyncIterator[Bed]:
    server = FakeOpencode(URL, directory=PROJECT)
    with StandIn() as first:
        fleet = fleet_of(tmp_path / "ocm", [("a", URL, first.pid)], transport=transport(server),
                         directory=PROJECT, environ={"OCM_HTTP_TIMEOUT": "0.1"})  # fmt: skip
        identity = process.identity_of(keeper.pid)
        assert identity is not None
        fleet.registry.keeper_started("a", identity)
        yield Bed(fleet, TaskStore(fleet.registry), server, first)
    await server.aclose()
    await fleet.aclose()


async def test_a_task_for_a_restarting_instance_waits_for_it(bed: Bed) -> None:
    bed.restarting()
    bed.server.crash()
    run = asyncio.create_task(run_task(bed.fleet, bed.store, "hello", TaskOptions(instance="a")))
    await asyncio.sleep(0.3)  # the restart takes a while: the task must still be waiting
    assert not run.done(), f"gave up during the restart: {run.exception()}"
    with StandIn() as replacement:
        bed.server.restart()
        bed.back(replacement.pid)
        record = await asyncio.wait_for(run, 10)
    assert record.status is TaskStatus.COMPLETED, record.error
    assert len(bed.server.turns) == 1


async def test_a_session_lost_with_its_server_is_made_again_once_it_is_back(bed: Bed) -> None:
    died: list[bool] = []

    async def dies(request: httpx.Request) -> httpx.Response | None:
        if died or (request.method, request.url.path) != ("POST", "/session"):
            return None
        died.append(True)
        bed.first.close()  # its server process dies as the task asks for its session
        bed.server.crash()
        raise httpx.ReadError("the server dropped the connection", request=request)

    bed.server.before = dies
    run = asyncio.create_task(run_task(bed.fleet, bed.store, "hello", TaskOptions(instance="a")))
    await _until(lambda: bed.server.down)
    await asyncio.sleep(0.3)  # its keeper takes a while to notice: the task must wait
    assert not run.done(), f"gave up during the restart: {run.result().error}"
    bed.restarting()
    with StandIn() as replacement:
        bed.server.restart()
        bed.back(replacement.pid)
        record = await asyncio.wait_for(run, 10)
    assert record.status is TaskStatus.COMPLETED, record.error
    assert record.attempts == 2
    assert len(bed.server.turns) == 1


async def test_an_instance_nobody_restarts_fails_at_once(bed: Bed) -> None:
    bed.fleet.registry.mark_crashed("a", "gave up")
    with pytest.raises(ConflictError, match="a is not running"):
        await asyncio.wait_for(
            run_task(bed.fleet, bed.store, "hello", TaskOptions(instance="a")), 5
        )


async def _until(condition: object, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)  # polling the fake's state, with a deadline

    await asyncio.wait_for(wait(), timeout)
