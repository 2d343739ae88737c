"""The public surface: __all__ is sorted, complete and importable."""

from __future__ import annotations

import opencode_manager


def test_all_is_sorted_and_importable() -> None:
    names = opencode_manager.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n.lower()))  # constants first
    for name in names:
        assert hasattr(opencode_manager, name), name
