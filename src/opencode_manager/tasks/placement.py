"""Where a task goes: the least busy instance with room under its limit (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import NotFoundError


@dataclass(frozen=True)
class Slot:
    """One candidate instance: its name, how busy it is, and how many more it may take."""

    name: str
    busy: int  # sessions running there now (ours and anyone else's)
    room: int | None = None  # None: no limit


def least_busy(slots: Sequence[Slot]) -> str:
    """The name of the least busy slot with room; ties go to the first listed."""
    open_slots = [s for s in slots if s.room is None or s.room > 0]
    if not open_slots:
        raise NotFoundError("every instance is at its limit")
    best = min(range(len(open_slots)), key=lambda i: (open_slots[i].busy, i))
    return open_slots[best].name


def pick(slots: Sequence[Slot]) -> str | None:
    """Like least_busy, but None when nothing has room (the caller waits)."""
    try:
        return least_busy(slots)
    except NotFoundError:
        return None
