"""Lifecycle policy without servers: the start's thread-and-cancel dance (`interruptibly`),
arguments checked before names are looked up, and the sweeps `cleanup` runs for others."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from opencode_manager.errors import ConflictError, Interrupted, UsageError
from opencode_manager.instances import lifecycle
from opencode_manager.instances.fleet import Fleet
from opencode_manager.models import InstanceSpec, Leftover, Swept

DEADLINE = 10.0  # seconds a worker thread may take to see its stop flag (it sees it at once)


def _start_like(done: list[str], running: threading.Event) -> Callable[[threading.Event], str]:
    """A blocking start: runs until told to stop, then rolls back and raises Interrupted,
    as `lifecycle.start` does."""

    def work(stop: threading.Event) -> str:
        running.set()
        if not stop.wait(DEADLINE):
            return "started"
        done.append("rolled back")
        raise Interrupted("start interrupted")

    return work


def test_an_uninterrupted_start_returns_what_the_thread_returns() -> None:
    assert asyncio.run(lifecycle.interruptibly(lambda stop: "names", None)) == "names"
    assert asyncio.run(lifecycle.interruptibly(lambda stop: "names", asyncio.Event())) == "names"


def test_setting_cancel_makes_the_thread_roll_back_and_raise_interrupted() -> None:
    done: list[str] = []

    async def main() -> None:
        cancel, running = asyncio.Event(), threading.Event()
        job = asyncio.create_task(lifecycle.interruptibly(_start_like(done, running), cancel))
        await asyncio.to_thread(running.wait, DEADLINE)
        cancel.set()
        with pytest.raises(Interrupted):
            await job

    asyncio.run(main())
    assert done == ["rolled back"]


def test_a_cancelled_caller_waits_for_the_roll_back_then_is_cancelled() -> None:
    done: list[str] = []

    async def main() -> None:
        running = threading.Event()
        job = asyncio.create_task(lifecycle.interruptibly(_start_like(done, running), None))
        await asyncio.to_thread(running.wait, DEADLINE)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert done == ["rolled back"]  # before the cancellation reached the caller

    asyncio.run(main())


def test_arguments_are_checked_before_names() -> None:
    with pytest.raises(UsageError, match="invalid --timeout"):
        lifecycle.check_stop(["a"], all=False, timeout=0)
    with pytest.raises(UsageError, match="not both"):
        lifecycle.check_restart(["a"], all=True, timeout=5)
    with pytest.raises(UsageError, match="which instances"):
        lifecycle.check_named([])


def test_a_named_instance_that_is_not_running_is_refused_before_anything_stops(
    home_fleet: Fleet,
) -> None:
    with home_fleet.registry.transaction() as db:
        home_fleet.registry.reserve(db, InstanceSpec(name="a", dir="/p"), port=None)
    home_fleet.registry.mark_stopped("a")
    with pytest.raises(ConflictError, match="a is not running"):
        lifecycle.stop_named(home_fleet, home_fleet.resolve_all(["a"]), timeout=5)


def test_cleanup_runs_the_sweeps_of_others_with_dry_run_and_force(home_fleet: Fleet) -> None:
    asked: list[tuple[bool, bool]] = []
    work = Leftover("/somewhere/t-2", "1 uncommitted file: a.txt")

    def sweep(dry_run: bool, force: bool) -> Swept:
        asked.append((dry_run, force))
        if force:
            return Swept(removed=["/somewhere/t-1", work.path], forced=[work])
        return Swept(removed=["/somewhere/t-1"], kept=[work])

    dry = lifecycle.cleanup(home_fleet, dry_run=True, sweeps=[sweep])
    done = lifecycle.cleanup(home_fleet, sweeps=[sweep])
    assert dry.removed_files == done.removed_files == ["/somewhere/t-1"]
    assert dry.kept == done.kept == [work]
    forced = lifecycle.cleanup(home_fleet, force=True, sweeps=[sweep])
    assert (forced.removed_files, forced.kept, forced.forced) == (
        ["/somewhere/t-1", work.path], [], [work])  # fmt: skip
    assert forced.to_dict()["forced"] == [{"path": work.path, "reason": work.reason}]
    assert asked == [(True, False), (False, False), (False, True)]
