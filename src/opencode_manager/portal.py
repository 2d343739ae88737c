"""A private event loop on its own thread, so sync code can drive the async core from anywhere.

`Manager` (the sync facade) sends every call here: it works the same from a plain script, from
a thread, and from code that already runs inside an event loop (a Jupyter cell, a FastAPI
handler), where ``asyncio.run`` would refuse. This is anyio's blocking portal reduced to what we
need: call a coroutine, iterate an async iterator, stop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    """An event loop running in a daemon thread, started on first use."""

    def __init__(self, name: str = "ocm-portal") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name=self._name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run the coroutine `make()` on the portal's loop and wait for its result.

        An interrupt (Ctrl-C) while waiting cancels the coroutine before propagating.
        """
        loop = self._ensure()
        if self._thread is threading.current_thread():
            raise RuntimeError("Portal.call from the portal's own thread would deadlock")
        future = asyncio.run_coroutine_threadsafe(make(), loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """Iterate an async iterator from sync code, one item at a time; closing the
        generator (or breaking out of the loop) closes the async iterator too."""
        iterator = make()
        loop = self._ensure()

        async def step() -> T:
            return await iterator.__anext__()

        try:
            while True:
                future = asyncio.run_coroutine_threadsafe(step(), loop)
                try:
                    item = future.result()
                except StopAsyncIteration:
                    return
                except BaseException:
                    future.cancel()
                    raise
                yield item
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                _wait(asyncio.run_coroutine_threadsafe(_close(aclose), loop))

    def stop(self) -> None:
        """Stop the loop and join its thread (pending work is cancelled)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if thread is threading.current_thread():
            loop.call_soon(loop.stop)
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_asyncgens()
            await loop.shutdown_default_executor()

        _wait(asyncio.run_coroutine_threadsafe(cancel_all(), loop))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _close(aclose: Callable[[], Awaitable[Any]]) -> None:
    await aclose()


def _wait(future: concurrent.futures.Future[Any], timeout: float = 10.0) -> None:
    try:
        future.result(timeout)
    except (Exception, concurrent.futures.CancelledError):
        return
