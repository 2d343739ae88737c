"""The keeper's writes to the registry, which must never take the keeper down.

A keeper supervises from memory; the registry is where it reports. When a write fails (the
registry locked by another process, the disk full, the file damaged), the write is kept in
order and retried with backoff while the keeper goes on supervising, and the registry catches
up when it can. Frequent writes (heartbeats, samples, the adopted list) are keyed: only the
latest of each is kept; events are kept too, up to `MAX_PENDING` (beyond, the oldest events
go and are counted in `dropped`, so the keeper can say how many). Writes run in a worker
thread, so a locked registry never stalls the loop that drains the server's output.

When the registry file is replaced under the keeper (`ocm restore`), the connection reopens on
the new file (registry.py) and `on_replaced` is called: the keeper hands `rejoin` a write of its
whole row, which goes first and stands for every pending write about the row (events stay).
Until it has landed, reads return None: the restored file's row is older than what the keeper
knows (a stop asked long ago must not stop the server now).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import NotFoundError, OcmError
from ..registry import Registry

T = TypeVar("T")
Write = Callable[[Registry], None]
FIRST_RETRY = 0.25
MAX_RETRY = 5.0
MAX_PENDING = 1000  # beyond this, the oldest events are dropped (and counted)
FAILURES = (OcmError, sqlite3.Error, OSError)
REJOIN = "rejoin"


@dataclass
class _Entry:
    fn: Write
    event: bool  # an event row; otherwise a write about the keeper's own row


class Ledger:
    def __init__(
        self,
        registry: Registry,
        *,
        on_trouble: Callable[[str | None], None] | None = None,
        on_replaced: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self._pending: OrderedDict[str, _Entry] = OrderedDict()
        self._ids = itertools.count()
        self._on_trouble = on_trouble
        self._on_replaced = on_replaced
        self._clock = clock
        self._retry_at = 0.0
        self._delay = FIRST_RETRY
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[bool] | None = None
        self._generation = registry.generation
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self.dropped = 0  # events given up while the registry could not be written

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def rejoining(self) -> bool:
        """The registry was replaced and the keeper's row is not written into it yet."""
        return REJOIN in self._pending

    def write(self, fn: Write, *, key: str | None = None, event: bool = False) -> None:
        """Queue a write (the latest one per key) and flush in the background."""
        if key is None:
            key = f"#{next(self._ids)}"
        else:
            self._pending.pop(key, None)
        self._pending[key] = _Entry(fn, event)
        if len(self._pending) > MAX_PENDING:
            oldest = next((k for k, e in self._pending.items() if e.event), None)
            if oldest is not None:
                del self._pending[oldest]
                self.dropped += 1
        self.kick()

    def rejoin(self, fn: Write) -> None:
        """The registry was replaced: `fn` writes the keeper's whole row, first; the pending
        writes about the row are covered by it (events stay, after it)."""
        self._pending = OrderedDict(
            [(REJOIN, _Entry(fn, False))] + [(k, e) for k, e in self._pending.items() if e.event]
        )
        self._retry_at = 0.0
        self.kick()

    def kick(self) -> None:
        """Flush soon, unless a flush is running or a retry is not due yet."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self, *, force: bool = False) -> bool:
        """Apply pending writes in order; True when nothing is left pending."""
        async with self._lock:
            if not force and self._clock() < self._retry_at:
                return not self._pending
            while self._pending or self.failing_since is not None:
                if not self._pending:
                    self._recovered()  # which may queue what the keeper says about it
                    continue
                key, entry = next(iter(self._pending.items()))
                try:
                    await asyncio.to_thread(entry.fn, self.registry)
                except FAILURES as exc:
                    if self._replaced():
                        continue  # a new file: the rejoin goes first, then this again
                    if not isinstance(exc, NotFoundError):
                        self._failed(exc)
                        return False
                    # The row is gone (`ocm rm`): there is nothing to write this to.
                # Done (a write that found the file replaced went into the new one). A newer
                # write under the same key may have replaced it meanwhile.
                if self._pending.get(key) is entry:
                    del self._pending[key]
                self._replaced()
            return True

    async def settle(self, deadline: float) -> bool:
        """Keep flushing until nothing is pending or the deadline passes (at exit)."""
        while True:
            if await self.flush(force=True):
                return True
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(min(self._delay, max(0.0, deadline - self._clock())))

    async def read(self, fn: Callable[[Registry], T]) -> T | None:
        """A read, or None while the registry cannot be read, or does not hold the keeper's
        state yet (just replaced)."""
        if self.rejoining:
            return None
        try:
            result = await asyncio.to_thread(fn, self.registry)
        except FAILURES:
            self._replaced()
            return None
        if self._replaced():
            return None
        return result

    def _replaced(self) -> bool:
        """Whether the registry file was found replaced since the last look (then the keeper
        is told, and queues its rejoin)."""
        if self.registry.generation == self._generation:
            return False
        self._generation = self.registry.generation
        if self._on_replaced is not None:
            self._on_replaced()
        return True

    def _failed(self, exc: BaseException) -> None:
        first = self.failing_since is None
        self.failing_since = self.failing_since or self._clock()
        self.last_error = str(exc) or exc.__class__.__name__
        self._retry_at = self._clock() + self._delay
        self._delay = min(self._delay * 2, MAX_RETRY)
        if first and self._on_trouble:
            self._on_trouble(self.last_error)
        loop = asyncio.get_running_loop()
        loop.call_later(self._retry_at - self._clock() + 0.01, self.kick)

    def _recovered(self) -> None:
        was_failing = self.failing_since is not None
        self.failing_since = None
        self._delay = FIRST_RETRY
        self._retry_at = 0.0
        if was_failing and self._on_trouble:
            self._on_trouble(None)
