"""`AsyncManager` and its blocking twin `Manager` cannot drift: twin.py is what scripts/twin.py
makes of manager.py, each twin takes the same parameters and hands every one of them on, and
the facade only delegates (every public method one statement)."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from opencode_manager import AsyncManager, Manager

ROOT = Path(__file__).resolve().parents[1]
ASYNC_ONLY = {"cancel"}  # an asyncio.Event of the caller's loop: a blocking call has Ctrl-C


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("twin_script", ROOT / "scripts" / "twin.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _public(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in vars(cls).items()
        if not name.startswith("_") and name not in ("aclose", "close")
    }


def test_twin_py_is_what_the_script_makes_of_manager_py() -> None:
    script = _script()
    assert script.TARGET.read_text() == script.render(), (
        "src/opencode_manager/twin.py is stale: .venv/bin/python scripts/twin.py"
    )


def test_the_script_sees_a_new_method_and_a_changed_parameter() -> None:
    """The staleness check can fail: the generator follows manager.py's source."""
    script = _script()
    source = script.SOURCE.read_text()
    anchor = "    async def top(self) -> FleetFrame:"
    method = '    async def extra(self, n: int = 2) -> int:\n        """x"""\n        return n\n\n'
    added = source.replace(anchor, method + anchor)
    assert "def extra(self, n: int = 2) -> int:" in script.render(added)
    changed = source.replace("checkpoint: Checkpoint | None = None,\n        requeue", "requeue")
    assert changed != source
    assert script.render(changed) != script.render(source)


def test_every_method_has_a_twin_with_the_same_parameters() -> None:
    aio, sync = _public(AsyncManager), _public(Manager)
    assert sorted(aio) == sorted(sync)
    for name, member in aio.items():
        twin = sync[name]
        if isinstance(member, property):
            assert isinstance(twin, property), name
            continue
        want = inspect.signature(member)
        got = inspect.signature(twin)
        wanted = [p for p in want.parameters.values() if p.name not in ASYNC_ONLY]
        assert list(got.parameters.values()) == wanted, name
        returns = str(want.return_annotation)
        if inspect.isasyncgenfunction(member):
            assert returns.startswith("AsyncIterator["), name
            returns = "Iterator[" + returns.removeprefix("AsyncIterator[")
        else:
            assert inspect.iscoroutinefunction(member), name
        assert str(got.return_annotation) == returns, name


class _Recorder:
    """Stands in for the async facade: records what each method was given."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}
        self.store = "the store"

    def __getattr__(self, name: str) -> Any:
        member = getattr(AsyncManager, name)
        signature = inspect.signature(member)

        def record(*args: Any, **kwargs: Any) -> None:
            bound = signature.bind(None, *args, **kwargs)
            self.calls[name] = {k: v for k, v in bound.arguments.items() if k != "self"}

        if inspect.isasyncgenfunction(member):

            async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[str]:
                record(*args, **kwargs)
                yield name

            return stream

        async def call(*args: Any, **kwargs: Any) -> str:
            record(*args, **kwargs)
            return name

        return call


def test_every_twin_hands_every_argument_on() -> None:
    with Manager() as manager:
        real, recorder = manager.aio, _Recorder()
        manager.aio = recorder  # type: ignore[assignment]
        try:
            for name, member in _public(Manager).items():
                if isinstance(member, property):
                    assert getattr(manager, name) == "the store"
                    continue
                given = {p: object() for p in inspect.signature(member).parameters if p != "self"}
                answer = getattr(manager, name)(**given)
                if inspect.isgenerator(answer):
                    stream, answer = answer, next(answer)
                    stream.close()
                assert answer == name
                assert recorder.calls[name] == given, name
        finally:
            manager.aio = real


def _statements(node: ast.AsyncFunctionDef) -> list[ast.stmt]:
    """The body without its docstring and its (lazy) imports."""
    body = [s for s in node.body if not isinstance(s, ast.Import | ast.ImportFrom)]
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return body


def test_every_facade_method_is_one_statement() -> None:
    tree = ast.parse(Path(inspect.getfile(AsyncManager)).read_text())
    [facade] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "AsyncManager"]
    long = [
        node.name
        for node in facade.body
        if isinstance(node, ast.AsyncFunctionDef)
        and not node.name.startswith("_")
        and len(_statements(node)) != 1
    ]
    assert long == [], f"move their policy down to the module that owns it: {long}"


@pytest.mark.parametrize("module", ["opencode_manager.twin", "opencode_manager.manager"])
def test_the_facade_modules_stay_small(module: str) -> None:
    path = Path(sys.modules[module].__file__ or "")
    assert len(path.read_text().splitlines()) <= 900
