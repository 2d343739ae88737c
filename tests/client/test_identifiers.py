"""Unit tests: message ids made the way OpenCode 1.18.33 makes its own (ascending)."""

from __future__ import annotations

import re

import pytest

from opencode_manager.client import identifiers

SHAPE = re.compile(r"^msg_[0-9a-f]{12}[0-9A-Za-z]{14}$")
# An (assistant) message id 1.18.33 made itself, and its time.created (probed: see the
# module; a user message's time.created is set a few ms after its id is made).
SERVER_MADE = "msg_25175e6df0013phnNLNvquQYdp"
SERVER_MS = 1796663011039


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identifiers, "_last", -1)


def test_an_id_has_opencodes_shape_and_time_field() -> None:
    made = identifiers.message_id(now_ms=SERVER_MS)
    assert SHAPE.match(made), made
    assert len(made) == len(SERVER_MADE)
    # The same millisecond gives the same time field as the server's own id.
    assert made[:16] == SERVER_MADE[:16]
    assert identifiers.sort_value(made) == identifiers.sort_value(SERVER_MADE)


def test_ids_ascend_within_a_millisecond_and_across_calls() -> None:
    made = [identifiers.message_id(now_ms=SERVER_MS) for _ in range(500)]
    assert made == sorted(made)
    assert len(set(made)) == 500
    later = identifiers.message_id(now_ms=SERVER_MS - 60_000)  # the clock went back
    assert later > made[-1]


def test_an_id_sorts_after_the_newest_message_of_a_continued_session() -> None:
    ahead = identifiers.message_id(now_ms=SERVER_MS + 3_600_000)  # a server an hour ahead
    identifiers._last = -1  # as in a fresh process
    ours = identifiers.message_id(now_ms=SERVER_MS, after=ahead)
    assert ours > ahead
    assert identifiers.message_id(now_ms=SERVER_MS, after="msg_bogus") > ours


def test_the_time_field_wraps_like_opencodes() -> None:
    """6 bytes of ms x 4096: 1.18.33's ids wrap every ~795 days; ours wrap the same way."""
    period_ms = (1 << 48) // 4096
    assert identifiers.message_id(now_ms=SERVER_MS + period_ms)[:16] == SERVER_MADE[:16]
