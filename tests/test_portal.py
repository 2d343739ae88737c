"""The sync facade's portal (anyio's blocking portal underneath): what `Manager` relies on.

Pinned across the move from a hand-written loop thread to anyio: safe from any thread and
inside a running event loop, Ctrl-C cancels the call, async iterators are walked and closed,
`stop` cancels what is left and joins the thread, nothing starts before the first call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from opencode_manager.portal import Portal


@pytest.fixture
def portal() -> Iterator[Portal]:
    made = Portal(name="test-portal")
    yield made
    made.stop()
    assert not [t for t in threading.enumerate() if t.name == "test-portal"]


async def _double(value: int) -> int:
    await asyncio.sleep(0)
    return value * 2


async def _fail() -> None:
    raise ValueError("from the loop")


def test_nothing_starts_before_the_first_call_and_it_starts_again_after_stop() -> None:
    portal = Portal(name="lazy-portal")
    portal.stop()
    assert not [t for t in threading.enumerate() if t.name == "lazy-portal"]
    assert portal.call(lambda: _double(2)) == 4
    assert [t for t in threading.enumerate() if t.name == "lazy-portal"]
    portal.stop()
    assert portal.call(lambda: _double(3)) == 6
    portal.stop()
    assert not [t for t in threading.enumerate() if t.name == "lazy-portal"]


def test_results_and_errors_cross_over(portal: Portal) -> None:
    assert portal.call(lambda: _double(21)) == 42
    with pytest.raises(ValueError, match="from the loop"):
        portal.call(_fail)


def test_a_call_from_inside_a_running_loop_and_from_many_threads(portal: Portal) -> None:
    async def handler() -> int:  # a FastAPI handler or a notebook cell, blocking on purpose
        return portal.call(lambda: _double(5))

    assert asyncio.run(handler()) == 10
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda i: portal.call(lambda: _double(i)), range(32))) == [
            i * 2 for i in range(32)
        ]


def test_a_call_from_the_portals_own_thread_is_refused(portal: Portal) -> None:
    async def reentrant() -> int:
        return portal.call(lambda: _double(1))

    with pytest.raises(RuntimeError):
        portal.call(reentrant)

    async def closing() -> None:
        portal.stop()

    with pytest.raises(RuntimeError, match="cannot be closed from one of its own calls"):
        portal.call(closing)


def test_ctrl_c_while_waiting_cancels_the_call(portal: Portal) -> None:
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    portal.call(lambda: _double(0))  # started: the interrupt lands in the wait below
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            portal.call(slow)
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
    assert cancelled.wait(5)


def test_an_async_iterator_is_walked_and_closed_when_the_caller_stops(portal: Portal) -> None:
    closed = threading.Event()

    async def counting() -> AsyncIterator[int]:
        try:
            for number in range(1000):
                await asyncio.sleep(0)
                yield number
        finally:
            closed.set()

    walked = portal.iterate(counting)
    assert [next(walked) for _ in range(3)] == [0, 1, 2]
    walked.close()  # a `break` out of a for loop
    assert closed.is_set()

    async def short() -> AsyncIterator[str]:
        yield "a"
        yield "b"

    assert list(portal.iterate(short)) == ["a", "b"]


def test_stop_cancels_what_is_still_running(portal: Portal) -> None:
    cancelled = threading.Event()
    started = threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(portal.call, forever)
        assert started.wait(5)
        portal.stop()
        assert cancelled.is_set()
        with pytest.raises(concurrent.futures.CancelledError):
            waiting.result(5)
