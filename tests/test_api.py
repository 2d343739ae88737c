"""The public surface: `__all__` is the lazy export table, sorted, importable, nothing extra;
the fronts' helpers are the same kind of table apart; and importing the library leaves the
interpreter as it was (the CLI's start-up tricks are the CLI's)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import opencode_manager
from opencode_manager import fronts


def _kind(name: str) -> int:
    """isort style, as ruff's RUF022 keeps `__all__`: CONSTANTS, then Classes, then functions."""
    return 0 if name.isupper() else 1 if name[0].isupper() else 2


def _type_checking_names(module: ModuleType) -> set[str]:
    """The names the `if TYPE_CHECKING:` block imports (what mypy sees the table give)."""
    tree = ast.parse(Path(str(module.__file__)).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name
        for node in ast.walk(block)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


@pytest.mark.parametrize(
    ("module", "extra"), [(opencode_manager, {"__version__"}), (fronts, set())]
)
def test_all_is_the_export_table_sorted_and_importable(module: ModuleType, extra: set[str]) -> None:
    names = module.__all__
    table: dict[str, tuple[str, str]] = module._EXPORTS
    assert names == sorted(names, key=lambda n: (_kind(n), n))
    assert len(set(names)) == len(names)
    assert set(names) == set(table) | extra  # nothing exported lazily that __all__ hides
    assert _type_checking_names(module) == set(table)  # and mypy sees each of them
    for name in names:
        assert getattr(module, name) is not None, name
    public = {  # submodules aside: a package has its loaded ones as attributes
        n
        for n in dir(module)
        if not n.startswith("_") and not isinstance(getattr(module, n), ModuleType)
    }
    assert public - set(names) <= {"annotations", "TYPE_CHECKING", "Any"}


def test_the_library_is_the_library() -> None:
    """What only a front needs is not the library's promise."""
    for name in ("strip_ansi", "human_size", "one_line", "serve_app", "listener", "parse_port"):
        assert name not in opencode_manager.__all__
        assert name in fronts.__all__
        with pytest.raises(AttributeError):
            getattr(opencode_manager, name)


def test_importing_the_library_installs_no_import_hook() -> None:
    code = (
        "import sys\n"
        "before = list(sys.meta_path)\n"
        "import opencode_manager, opencode_manager.manager\n"
        "assert sys.meta_path == before, sys.meta_path\n"
        "import httpx\n"
        "assert 'httpx._main' in sys.modules  # httpx as httpx ships it\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_cli_defers_httpxs_own_cli_and_keeps_it_working() -> None:
    """Under `ocm`, importing httpx skips its command-line client (click's formatting, rich,
    pygments); the client still loads when asked for."""
    code = (
        "import sys, opencode_manager.cli, httpx\n"
        "assert not {'rich', 'pygments'} & set(sys.modules), sorted(sys.modules)\n"
        "import httpx._main\n"
        "assert httpx._main.main.name == 'main', httpx._main.main\n"
        "assert callable(httpx.main)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
