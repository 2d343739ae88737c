"""Unit tests: human durations."""

from __future__ import annotations

import pytest

from opencode_manager.durations import parse_duration
from opencode_manager.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("12h", 43200),
        ("7d", 604800),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1w", 604800),
        ("2.5h", 9000),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "m5", "-5", "1h 30m", "h"])
def test_reject(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)
