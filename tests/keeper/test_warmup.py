"""Unit tests: the warm-up sequence over an injected GET and clock (no server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from opencode_manager.errors import ServerRefused, ServerUnreachable
from opencode_manager.keeper.loop import Keeper
from opencode_manager.keeper.warmup import STEPS, Warmup, step_paths, warm_up
from opencode_manager.models import InstanceSpec, State
from opencode_manager.registry import Registry
from opencode_manager.settings import Settings
from opencode_manager.testing.keeper import FakeHost, FakeProbe, FakeSpawner

pytestmark = [pytest.mark.timeout(20), pytest.mark.anyio]


class Clock:
    """Time moves only when a fake call says it took some."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_step_names_the_directory() -> None:
    paths = step_paths("/work/my project")
    assert [p.split("?")[0] for p in paths] == list(STEPS)
    assert all(p.endswith("?directory=%2Fwork%2Fmy%20project") for p in paths)


async def test_all_steps_in_order() -> None:
    clock, seen = Clock(), []

    async def get(target: str, timeout: float) -> object:
        seen.append(target.split("?")[0])
        clock.now += 0.25
        return {}

    result = await warm_up(get, "/p", budget=10.0, clock=clock)
    assert seen == list(STEPS)
    assert result == Warmup(seconds=0.75, done=STEPS)
    assert "warmed up in 0.75 s (3/3 calls)" in result.describe()


async def test_a_failing_step_is_reported_and_the_rest_still_run() -> None:
    async def get(target: str, timeout: float) -> object:
        if target.startswith("/agent"):
            raise ServerRefused("/agent failed with HTTP 500", status_code=500)
        return {}

    result = await warm_up(get, "/p", budget=10.0, clock=Clock())
    assert result.done == ("/config", "/config/providers")
    assert result.failed == ("/agent: /agent failed with HTTP 500",)
    assert "failed: /agent" in result.describe()


async def test_the_budget_bounds_the_whole_warm_up() -> None:
    clock, timeouts = Clock(), []

    async def get(target: str, timeout: float) -> object:
        timeouts.append(timeout)
        clock.now += 3.0  # every call is slow
        if clock.now - 100.0 > 5.0:
            raise ServerUnreachable("timed out")
        return {}

    result = await warm_up(get, "/p", budget=5.0, clock=clock)
    assert timeouts == [5.0, 2.0]  # each call gets only what is left
    assert result.done == ("/config",)
    assert result.timed_out
    assert not result.failed
    assert "budget spent" in result.describe()


async def test_the_keeper_warms_up_before_running_and_not_with_a_zero_budget(
    tmp_path: Path,
) -> None:
    for budget, expected in (("15", len(STEPS)), ("0", 0)):
        environ = {"HOME": str(tmp_path), "OCM_WARMUP_TIMEOUT": budget}
        settings = Settings.load(home=tmp_path / budget, environ=environ)
        settings.ensure_home()
        registry = Registry(settings.registry_path)
        spec = InstanceSpec(name="w", dir=str(tmp_path))
        with registry.transaction() as db:
            registry.reserve(db, spec, port=None, token="t")
        spawner = FakeSpawner()
        probe = FakeProbe(spawner)
        keeper = Keeper(
            settings,
            registry.get("w"),
            registry,
            spawner=spawner,
            probe=probe,
            host=FakeHost(),
            capture_stdio=False,
        )
        task = asyncio.create_task(keeper.run(signals=False))
        await spawner.started(1)
        while registry.get("w").state is not State.RUNNING:
            await asyncio.sleep(0.005)  # polled; the test's timeout is the deadline
        assert len(probe.warmed) == expected
        assert all(
            t.endswith("directory=" + str(tmp_path).replace("/", "%2F")) for t in probe.warmed
        )
        keeper.request_stop()
        assert await asyncio.wait_for(task, 5.0) == 0
