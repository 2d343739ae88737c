"""The public surface: __all__ is sorted, complete and importable."""

from __future__ import annotations

import subprocess
import sys

import opencode_manager


def test_all_is_sorted_and_importable() -> None:
    names = opencode_manager.__all__

    # isort style, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions.
    def kind(name: str) -> int:
        return 0 if name.isupper() else 1 if name[0].isupper() else 2

    assert names == sorted(names, key=lambda n: (kind(n), n))
    for name in names:
        assert hasattr(opencode_manager, name), name


def test_httpx_cli_is_deferred_not_broken() -> None:
    """Importing httpx after us skips its command-line client (click, rich, pygments); the
    client still loads when asked for."""
    code = (
        "import sys, opencode_manager, httpx\n"
        "assert not {'rich', 'pygments'} & set(sys.modules), sorted(sys.modules)\n"
        "import httpx._main\n"
        "assert httpx._main.main.name == 'main', httpx._main.main\n"
        "assert callable(httpx.main)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
