"""Sync code driving the async core from anywhere, through anyio's blocking portal.

`Manager` (the sync facade) sends every call here: it works the same from a plain script, from
a thread, and from code that already runs inside an event loop (a Jupyter cell, a FastAPI
handler), where ``asyncio.run`` would refuse. The event loop in its own thread is anyio's
(`anyio.from_thread.start_blocking_portal`); this adds what the facade needs on top: the
portal starts on first use (a `Manager` never called starts no thread, and `ocm --version`
imports no anyio), and again after `stop`; an interrupt (Ctrl-C) while waiting cancels the
call; an async iterator is walked one item per call and closed on the loop it ran on; and
`stop` cancels what is still running instead of waiting for it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

T = TypeVar("T")
_CLOSE_TIMEOUT = 10.0  # seconds an abandoned iterator gets to close


class Portal:
    """anyio's blocking portal (an event loop in a daemon thread), started on first use."""

    def __init__(self, name: str = "ocm-portal") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._stack: contextlib.ExitStack | None = None
        self._thread: int | None = None

    def _ensure(self) -> BlockingPortal:
        with self._lock:
            if self._portal is None:
                from anyio.from_thread import start_blocking_portal

                stack = contextlib.ExitStack()
                portal = stack.enter_context(start_blocking_portal(name=self._name))
                self._thread = portal.call(threading.get_ident)
                self._portal, self._stack = portal, stack
            return self._portal

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run the coroutine `make()` on the portal's loop and wait for its result.

        An interrupt (Ctrl-C) while waiting cancels the coroutine before propagating.
        """
        return _wait(self._ensure(), make)

    def iterate(self, make: Callable[[], AsyncIterator[T]]) -> Generator[T, None, None]:
        """Iterate an async iterator from sync code, one item at a time; closing the
        generator (or breaking out of the loop) closes the async iterator too."""
        iterator = make()
        portal = self._ensure()
        try:
            while True:
                try:
                    item = _wait(portal, iterator.__anext__)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                # A stopped portal, or an iterator that fails or hangs while closing: the
                # caller is done with it either way (`stop` cancels what is left).
                with contextlib.suppress(Exception):
                    portal.start_task_soon(aclose).result(_CLOSE_TIMEOUT)

    def stop(self) -> None:
        """Stop the loop and join its thread; pending work is cancelled."""
        if self._thread == threading.get_ident():
            raise RuntimeError("a Manager cannot be closed from one of its own calls")
        with self._lock:
            portal, stack = self._portal, self._stack
            self._portal = self._stack = self._thread = None
        if portal is None or stack is None:
            return
        with contextlib.suppress(RuntimeError):  # it stopped already (its loop died)
            portal.call(portal.stop, True)
        stack.close()


def _wait(portal: BlockingPortal, make: Callable[[], Awaitable[T]]) -> T:
    future = portal.start_task_soon(make)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # anyio cancels the task's scope when its future is cancelled
        raise
