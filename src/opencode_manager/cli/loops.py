"""Running the async facade from a command, with the CLI's Ctrl-C semantics."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .. import AsyncManager, Interrupted
from .main import EXIT_INTERRUPTED, Context
from .plain import say

T = TypeVar("T")


#: What the first Ctrl-C shows on a terminal while the command undoes its work; erased
#: before the one line that says what was undone (a pipe gets that line alone).
NOTICE = "ocm: stopping… (Ctrl-C again to quit at once)"
_notice = {"shown": False}


def clear_notice() -> None:
    """Erase the Ctrl-C notice, if one is on the terminal's last line."""
    if _notice["shown"]:
        _notice["shown"] = False
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()


def run_with_cancel(
    state: Context,
    make: Callable[[AsyncManager, asyncio.Event], Awaitable[T]],
    opencode: str | None = None,
    *,
    left: str = "see `ocm ls`",
) -> T:
    """Run a coroutine on the async facade. The first Ctrl-C (or SIGTERM) asks it to stop
    cleanly: it undoes or aborts what it started and raises Interrupted, which `main` prints
    as one line (exit 130). The second Ctrl-C quits at once, saying what may be left and
    where to look (`left`: the command's own advice)."""

    async def main() -> T:
        cancel = asyncio.Event()
        loop = asyncio.get_running_loop()
        presses = 0

        def on_sigint() -> None:
            nonlocal presses
            presses += 1
            if presses > 1:
                clear_notice()
                say(f"ocm: interrupted before it had undone its work; {left}")
                sys.stderr.flush()
                os._exit(EXIT_INTERRUPTED)  # threads still at work would hold up a normal exit
            if sys.stderr.isatty():
                sys.stderr.write(NOTICE)
                sys.stderr.flush()
                _notice["shown"] = True
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


def stopped(command: str, what: str) -> Interrupted:
    """A watcher's Ctrl-C (`logs -f`, `monitor`, `top`): like every other command's, one line
    and exit 130, though there is nothing to undo."""
    return Interrupted(f"{command} interrupted: stopped {what}")


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
