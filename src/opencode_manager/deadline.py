"""Awaiting with a time limit, without losing a cancellation.

`asyncio.wait_for` before Python 3.12 runs what it awaits as a task of its own, and when
that task finishes in the same loop step as the caller is cancelled, it returns the result
and drops the cancellation (CPython gh-86296). A task follower cancelled just as an event
came in then followed its task to the end: MCP `task_run` with `wait_s: 0` took as long as
the task. `asyncio.timeout` (3.11+) cancels the caller's own task and counts the
cancellations, so a cancellation from outside is never taken for the timeout or dropped.
Python 3.10 has no `asyncio.timeout` and keeps `wait_for` (and the race).

`stop_child` is the other half: ending a helper task without taking a cancellation of the
caller for the helper's (`await child` inside `suppress(CancelledError)` cannot tell them
apart).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[T], seconds: float) -> T:
        """`await awaitable`, or asyncio.TimeoutError after `seconds` (cancelling it)."""
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def within(awaitable: Awaitable[T], seconds: float) -> T:
        """`await awaitable`, or asyncio.TimeoutError after `seconds` (cancelling it)."""
        return await asyncio.wait_for(awaitable, seconds)


async def stop_child(child: asyncio.Task[Any]) -> None:
    """Cancel a helper task and wait until it has ended; what it returned or raised is
    dropped, a cancellation of the caller is not."""
    child.cancel()
    await asyncio.wait({child})
    if not child.cancelled():
        child.exception()  # retrieved, so asyncio does not report it as lost
