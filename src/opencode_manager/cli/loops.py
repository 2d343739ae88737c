"""Running the async facade from a command, with the CLI's Ctrl-C semantics."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .. import AsyncManager
from .main import Context
from .plain import say

T = TypeVar("T")


def run_with_cancel(
    state: Context,
    make: Callable[[AsyncManager, asyncio.Event], Awaitable[T]],
    opencode: str | None = None,
) -> T:
    """Run a coroutine on the async facade; the first Ctrl-C asks it to stop cleanly (it
    aborts what it started), the second one insists."""

    async def main() -> T:
        cancel = asyncio.Event()
        loop = asyncio.get_running_loop()
        presses = 0

        def on_sigint() -> None:
            nonlocal presses
            presses += 1
            if presses > 1:
                raise KeyboardInterrupt
            say("ocm: stopping (Ctrl-C again to quit at once)…")
            cancel.set()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, cancel.set)
        try:
            async with state.amanager(opencode) as manager:
                return await make(manager, cancel)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(main())


def watch(state: Context, make: Callable[[AsyncManager], Awaitable[T]]) -> T | None:
    """Run a watcher on the async facade; Ctrl-C (or SIGTERM) stops watching and nothing
    else: the result is None then."""

    async def main() -> T | None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            async with state.amanager() as manager:
                return await make(manager)
        except asyncio.CancelledError:
            return None
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(main())
