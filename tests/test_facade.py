"""The facade on real servers: `Manager` inside a running event loop, `AsyncManager` end to
end (start, concurrent tasks, monitor, stop), and no zombies over start/stop cycles."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psutil
import pytest

from opencode_manager import (
    AsyncManager,
    Manager,
    Received,
    Settings,
    Status,
    StatusReport,
    TaskOptions,
    TaskStatus,
)

from conftest import Fleet

pytestmark = pytest.mark.integration


def test_the_sync_facade_works_inside_a_running_event_loop(fleet: Fleet) -> None:
    settings = Settings.load(environ={**os.environ, **fleet.env})

    async def main() -> tuple[list[str], StatusReport]:
        # As in a Jupyter cell or a FastAPI handler: a loop is running in this thread.
        with Manager(settings) as manager:
            names = [i.name for i in manager.instances(include_foreign=False)]
            return names, manager.status("oc-1")

    names, report = asyncio.run(main())
    assert names == ["oc-1", "oc-2", "oc-3"]
    assert report.info.status is Status.RUNNING
    assert report.sessions is not None
    assert report.processes


def test_the_async_facade_end_to_end(model_env: list[str], tmp_path: Path) -> None:
    async def main() -> tuple[list[TaskStatus], list[Received], list[str]]:
        async with AsyncManager() as ocm:
            infos = await ocm.start("af", count=2, env=model_env, directory=str(tmp_path))
            names = [i.name for i in infos]
            seen: list[Received] = []

            async def watch() -> None:
                async for item in ocm.monitor(names):
                    seen.append(item)
                    if len(seen) >= 10:
                        return

            watcher = asyncio.create_task(watch())
            try:
                records = await asyncio.gather(
                    *(ocm.run(f"BASH: echo from {n}", TaskOptions(instance=n)) for n in names)
                )
                await asyncio.wait_for(watcher, 30)
            finally:
                watcher.cancel()
                stopped = await ocm.stop(names)
            return [r.status for r in records], seen, [s.status for s in stopped]

    statuses, seen, stopped = asyncio.run(main())
    assert statuses == [TaskStatus.COMPLETED, TaskStatus.COMPLETED]
    assert len(seen) >= 10
    assert {item.instance for item in seen} == {"af-1", "af-2"}
    assert stopped == ["stopped", "stopped"]


def test_no_zombies_after_five_start_stop_cycles(model_env: list[str], tmp_path: Path) -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with Manager() as manager:
        for cycle in range(5):
            [info] = manager.start(f"z{cycle}", env=model_env, directory=str(tmp_path))
            manager.stop([info.name])
    new = [p for p in me.children(recursive=True) if p.pid not in before]
    states = []
    for proc in new:
        try:
            states.append((proc.pid, proc.status()))
        except psutil.NoSuchProcess:
            continue
    assert [s for s in states if s[1] == psutil.STATUS_ZOMBIE] == []
    assert states == []  # keepers are nobody's children: nothing of ours is left to reap
