"""The public surface: __all__ is sorted, complete and importable."""

from __future__ import annotations

import opencode_manager


def test_all_is_sorted_and_importable() -> None:
    names = opencode_manager.__all__

    # isort style, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions.
    def kind(name: str) -> int:
        return 0 if name.isupper() else 1 if name[0].isupper() else 2

    assert names == sorted(names, key=lambda n: (kind(n), n))
    for name in names:
        assert hasattr(opencode_manager, name), name
