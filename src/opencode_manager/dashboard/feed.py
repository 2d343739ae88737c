"""The events page's feed: one monitor of the whole fleet for the dashboard's lifetime, the
keepers' lifecycle events beside it, a buffer of recent rows, and a queue per open page.

OpenCode keeps no event history, so a page opened after a task ran would start empty. The
feed watches from the moment the dashboard starts (and seeds itself with the lifecycle events
already in the registry), so the page opens with what happened and streams what follows.
Every row gets a sequence number: the page is rendered with the rows up to N and its stream
sends those after N (and after the SSE `Last-Event-ID` on a reconnect), so none is lost or
shown twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from .. import (
    AsyncManager,
    Event,
    EventKind,
    LifecycleEvent,
    OcmError,
    Received,
)
from ..fronts import EventFilter, EventFolder
from . import views

KEEP = 1000  # rows kept for pages opened later (filters pick from these)
SEED = 100  # lifecycle events read from the registry when the dashboard starts
LIFECYCLE_POLL_S = 2.0  # how often the registry is read for new lifecycle events
RETRY_S = 2.0  # after the monitor failed (the registry was busy, say)
QUEUE = 2000  # rows a slow page may fall behind before it misses some
# Text deltas are folded into one "text: ..." row when their part ends; a page shows them
# while it watches, but they would crowd everything else out of the buffer.
LIVE_ONLY = frozenset({"message.part.delta"})

_LEVELS = {
    EventKind.CRASHED.value: "bad", EventKind.ERRORED.value: "bad",
    EventKind.KEEPER_ERROR.value: "bad", EventKind.UNHEALTHY.value: "warn",
    EventKind.RECYCLED.value: "warn", EventKind.RESTARTED.value: "warn",
    EventKind.HEALTHY.value: "good", EventKind.STARTED.value: "info",
}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One row of the feed: its number, the event (for filtering) and what the page shows."""

    seq: int
    event: Event
    row: views.EventRow
    # Shown without a type filter (as `ocm monitor` shows it): folded text, tool starts and
    # ends, session states, asks, errors; not bootstrap chatter, deltas or raw updates.
    shown: bool = True


def lifecycle_entry(seq: int, event: LifecycleEvent) -> Entry:
    """A keeper's lifecycle event as a feed row (type `ocm.<kind>`, like ocm's own events)."""
    kind = f"ocm.{event.kind}"
    text = f"{event.kind}: {event.detail}" if event.detail else event.kind
    row = views.EventRow(event.time, event.instance, kind, None, text,
                         _LEVELS.get(event.kind, "muted"), seq)  # fmt: skip
    return Entry(seq, Event(kind, {"detail": event.detail}), row)


@dataclass(frozen=True)
class View:
    """What one page asked to see."""

    instance: str | None = None
    where: EventFilter = field(default_factory=EventFilter)

    def accepts(self, entry: Entry) -> bool:
        if self.instance is not None and entry.row.instance != self.instance:
            return False
        if not self.where.types and not entry.shown:
            return False
        return self.where.accepts(entry.event)


class Feed:
    """The buffer and the subscribers (pure but for `run`, which fills them)."""

    def __init__(self, keep: int = KEEP) -> None:
        self._rows: deque[Entry] = deque(maxlen=keep)
        self._queues: set[asyncio.Queue[Entry]] = set()
        self._seq = itertools.count(1)
        # Per instance: what `ocm monitor` shows, and every event's line (for type filters).
        self._folders: dict[str, tuple[EventFolder, EventFolder]] = {}
        self.last = 0  # the newest sequence number given
        self.ready = asyncio.Event()  # set once the registry's history is in

    def publish_event(self, item: Received) -> Entry:
        """A monitor event: folded into its line (or a brief of it), numbered, kept, sent."""
        quiet, verbose = self._folders.setdefault(
            item.instance, (EventFolder(), EventFolder(verbose=True))
        )
        shown = quiet.line(item.event) is not None
        row = views.event_row(item, verbose.line(item.event))
        entry = self._numbered(item.event, row, shown)
        if item.event.type not in LIVE_ONLY:
            self._rows.append(entry)
        self._send(entry)
        return entry

    def publish_lifecycle(self, event: LifecycleEvent) -> Entry:
        entry = lifecycle_entry(next(self._seq), event)
        self.last = entry.seq
        self._rows.append(entry)
        self._send(entry)
        return entry

    def _numbered(self, event: Event, row: views.EventRow, shown: bool) -> Entry:
        seq = next(self._seq)
        self.last = seq
        row = views.EventRow(row.at, row.instance, row.type, row.session, row.text, row.level, seq)
        return Entry(seq, event, row, shown)

    def _send(self, entry: Entry) -> None:
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):  # that page misses this row
                queue.put_nowait(entry)

    def recent(self, view: View, *, after: int = 0, limit: int | None = None) -> list[Entry]:
        """Kept rows after `after` that the view accepts, oldest first (the newest `limit`)."""
        found = [e for e in self._rows if e.seq > after and view.accepts(e)]
        return found[-limit:] if limit else found

    def sessions(self) -> list[str]:
        """Sessions seen in the kept rows, newest first (for the page's pick-list)."""
        seen = dict.fromkeys(e.row.session for e in reversed(self._rows) if e.row.session)
        return [s for s in seen if s]

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Entry]]:
        """A queue of every row published while the caller listens."""
        queue: asyncio.Queue[Entry] = asyncio.Queue(maxsize=QUEUE)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    # -- the I/O shell ----------------------------------------------------------------------
    async def run(self, manager: AsyncManager) -> None:
        """Fill the feed until cancelled: the registry's recent lifecycle events first, then
        new ones as the keepers record them, and every instance's OpenCode events."""
        last_id: int | None = None
        try:
            for event in await manager.events(limit=SEED):
                self.publish_lifecycle(event)
                last_id = event.id
        except OcmError:
            pass  # no history to show; the live part still works
        finally:
            self.ready.set()
        await asyncio.gather(self._lifecycle(manager, last_id), self._monitor(manager))

    async def _lifecycle(self, manager: AsyncManager, last_id: int | None) -> None:
        while True:
            await asyncio.sleep(LIFECYCLE_POLL_S)  # the keepers write to the registry
            with contextlib.suppress(OcmError):
                for event in await manager.events(after=last_id or 0, limit=SEED):
                    self.publish_lifecycle(event)
                    last_id = event.id

    async def _monitor(self, manager: AsyncManager) -> None:
        while True:
            with contextlib.suppress(OcmError):
                async for item in manager.monitor(follow_new=True):
                    self.publish_event(item)
            await asyncio.sleep(RETRY_S)  # the monitor failed: start it again shortly
