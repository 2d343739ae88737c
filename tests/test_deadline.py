"""`within`: a time limit that never swallows a cancellation (asyncio.wait_for on Python
3.11 returns the result when its awaitable finishes in the step the caller is cancelled)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from opencode_manager.deadline import stop_child, within


def test_returns_the_result_in_time() -> None:
    async def main() -> int:
        return await within(asyncio.sleep(0, 7), 5)

    assert asyncio.run(main()) == 7


def test_times_out_and_cancels_what_it_awaited() -> None:
    async def main() -> bool:
        event = asyncio.Event()
        with pytest.raises(asyncio.TimeoutError):
            await within(event.wait(), 0.01)
        return event.is_set()

    assert asyncio.run(main()) is False


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 has no asyncio.timeout")
def test_a_cancellation_in_the_step_the_awaitable_ends_is_kept() -> None:
    """The race MCP task_run with wait_s 0 lost: the item arrives as the follower is
    cancelled; the follower must end cancelled, not take the item and carry on."""

    async def main() -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()

        async def follower() -> str:
            return await within(queue.get(), 30)

        task = asyncio.create_task(follower())
        await asyncio.sleep(0)  # the follower waits on the queue
        queue.put_nowait("event")  # it is woken with the item ...
        task.cancel()  # ... and cancelled in the same step
        with pytest.raises(asyncio.CancelledError):
            await task
        assert queue.qsize() == 1  # the item is not lost either

    asyncio.run(main())


def test_a_timeout_is_not_taken_for_a_cancellation_from_outside() -> None:
    async def main() -> None:
        async def follower() -> None:
            while True:
                try:
                    await within(asyncio.sleep(1), 0.001)
                except asyncio.TimeoutError:
                    continue

        task = asyncio.create_task(follower())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_stopping_a_child_keeps_the_callers_cancellation() -> None:
    """A caller cancelled while it waits for its helper to end is cancelled, not handed
    the helper's CancelledError to swallow (the runner's event reader, the hub's pumps)."""

    async def main() -> None:
        ending = asyncio.Event()

        async def helper() -> None:
            try:
                await asyncio.sleep(30)
            finally:
                await ending.wait()  # a helper that takes a moment to end

        async def caller() -> str:
            child = asyncio.create_task(helper())
            await asyncio.sleep(0)
            await stop_child(child)
            return "carried on"

        task = asyncio.create_task(caller())
        for _ in range(3):
            await asyncio.sleep(0)  # the caller now waits for its helper
        task.cancel()
        ending.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_stopping_a_child_drops_its_result_and_error() -> None:
    async def main() -> None:
        async def failing() -> None:
            raise RuntimeError("boom")

        child = asyncio.create_task(failing())
        await asyncio.sleep(0)
        await stop_child(child)  # no raise; the error is retrieved
        assert isinstance(child.exception(), RuntimeError)

    asyncio.run(main())
