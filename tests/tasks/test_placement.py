"""Unit tests: least-busy placement."""

from __future__ import annotations

import pytest

from opencode_manager.errors import NotFoundError
from opencode_manager.tasks.placement import Slot, least_busy, pick


def test_least_busy_wins_and_ties_go_to_the_first() -> None:
    assert least_busy([Slot("a", 2), Slot("b", 0), Slot("c", 0)]) == "b"
    assert least_busy([Slot("a", 1), Slot("b", 1)]) == "a"


def test_limits() -> None:
    assert least_busy([Slot("a", 0, room=0), Slot("b", 5, room=1)]) == "b"
    assert pick([Slot("a", 0, room=0)]) is None
    with pytest.raises(NotFoundError):
        least_busy([])
