"""Write `Manager` (src/opencode_manager/twin.py), the blocking twin of `AsyncManager`, from
manager.py, so the two cannot drift: each public coroutine of `AsyncManager` becomes a method
with the same parameters (names, kinds, defaults, annotations) that runs it on the portal, each
async iterator one that iterates it there, each property one that reads the async facade's.

`cancel` (an asyncio.Event of the caller's loop) is left out: a blocking call is cancelled by
an interrupt (Ctrl-C) while it waits.

    .venv/bin/python scripts/twin.py            # rewrite twin.py
    .venv/bin/python scripts/twin.py --check    # exit 1 if twin.py is stale

tests/test_twins.py runs the check too.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "opencode_manager" / "manager.py"
TARGET = ROOT / "src" / "opencode_manager" / "twin.py"
#: Parameters of the async facade that the blocking twin does not take.
ASYNC_ONLY = frozenset({"cancel"})

HEAD = '''"""`Manager`: the blocking twin of `AsyncManager`, usable from any thread (also one whose
event loop is running: a Jupyter cell, a FastAPI handler).

Generated from manager.py by scripts/twin.py: do not edit (tests/test_twins.py fails when it
is stale). Every method is `AsyncManager`'s, with the same parameters, run on a private event
loop in a thread of its own (anyio's blocking portal, via `portal.Portal`); `cancel` is left
out: an interrupt (Ctrl-C) while a call waits cancels it.
"""

from __future__ import annotations

{imports}

T = TypeVar("T")


class Manager:
    """The sync twin of `AsyncManager`: the same methods, blocking, usable from any thread
    (also while an event loop runs in it)."""

    def __init__(
        self, settings: Settings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.aio = AsyncManager(settings, transport=transport)
        self.settings = self.aio.settings
        self._portal = Portal()

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        return self._portal.call(make)

    def close(self) -> None:
        try:
            if self.aio.fleet.http_open:  # made on the portal's loop: closed there
                self._call(self.aio.fleet.aclose_http)
        finally:
            self._portal.stop()
            self.aio.fleet.close()

    def __enter__(self) -> Manager:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
'''
#: Names the head uses at run time, and where they come from.
HEAD_IMPORTS = {
    "Awaitable": "collections.abc", "Callable": "collections.abc", "Iterator": "collections.abc",
    "TracebackType": "types", "Any": "typing", "TYPE_CHECKING": "typing", "TypeVar": "typing",
    "AsyncManager": ".manager", "Portal": ".portal",
}  # fmt: skip


def _sources(tree: ast.Module) -> tuple[dict[str, str], set[str]]:
    """Each name manager.py binds at module level -> the import line that binds it here,
    and the names it imports only for type checking."""
    found: dict[str, str] = {}
    typing_only: set[str] = set()

    def take(node: ast.stmt, checking: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name
                found[bound] = f"import {alias.name}" + (f" as {bound}" if alias.asname else "")
                if checking:
                    typing_only.add(bound)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                bound = alias.asname or alias.name
                if module == "." and alias.asname:
                    found[bound] = f"from . import {alias.name} as {bound}"
                elif alias.asname:
                    found[bound] = f"from {module} import {alias.name} as {bound}"
                else:
                    found[bound] = f"from {module} import {alias.name}"
                if checking:
                    typing_only.add(bound)
        elif isinstance(node, ast.Assign) and not checking:
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.isupper() and len(target.id) > 1:
                    found[target.id] = f"from .manager import {target.id}"

    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for inner in node.body:
                take(inner, True)
        else:
            take(node, False)
    for name, module in HEAD_IMPORTS.items():
        found[name] = f"from {module} import {name}"
    return found, typing_only


def _method(node: ast.AsyncFunctionDef) -> tuple[str, set[str]]:
    """The blocking twin of one coroutine or async iterator, and the names its defaults use
    (needed at run time)."""
    args = node.args
    if args.vararg or args.kwarg or args.posonlyargs:
        raise SystemExit(f"AsyncManager.{node.name}: *args, **kwargs and / are not mirrored")
    params, passed, defaults_used = ["self"], [], set()
    positional = args.args[1:]
    padded = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    keyword = list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    for kind, pairs in (("positional", zip(positional, padded, strict=True)), ("keyword", keyword)):
        wrote_star = False
        for arg, default in pairs:
            if arg.arg in ASYNC_ONLY:
                continue
            if kind == "keyword" and not wrote_star:
                params.append("*")
                wrote_star = True
            annotation = f": {ast.unparse(arg.annotation)}" if arg.annotation else ""
            text = f"{arg.arg}{annotation}"
            if default is not None:
                text += f" = {ast.unparse(default)}"
                defaults_used |= {n.id for n in ast.walk(default) if isinstance(n, ast.Name)}
            params.append(text)
            passed.append(arg.arg if kind == "positional" else f"{arg.arg}={arg.arg}")
    returns = ast.unparse(node.returns) if node.returns else "None"
    call = f"self.aio.{node.name}({', '.join(passed)})"
    if returns.startswith("AsyncIterator["):
        returns = "Iterator[" + returns.removeprefix("AsyncIterator[")
        body = f"return self._portal.iterate(lambda: {call})"
    elif passed:
        body = f"return self._call(lambda: {call})"
    else:
        body = f"return self._call(self.aio.{node.name})"
    signature = f"    def {node.name}({', '.join(params)}) -> {returns}:"
    return f"{signature}\n        {body}\n", defaults_used


def _property(node: ast.FunctionDef) -> str:
    returns = ast.unparse(node.returns) if node.returns else "Any"
    signature = f"    @property\n    def {node.name}(self) -> {returns}:"
    return f"{signature}\n        return self.aio.{node.name}\n"


def render(source: str | None = None) -> str:
    """twin.py as it should be for this manager.py (formatted as ruff formats it)."""
    tree = ast.parse(source if source is not None else SOURCE.read_text())
    facade = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "AsyncManager")
    methods: list[str] = []
    runtime = {"AsyncManager", "Portal", "TypeVar", "TYPE_CHECKING", "Any", "Callable"}
    runtime |= {"Awaitable", "TracebackType"}
    for node in facade.body:
        public = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not (
            node.name.startswith("_") or node.name == "aclose"
        )
        if not public:
            continue
        if isinstance(node, ast.FunctionDef) and any(
            ast.unparse(d) == "property" for d in node.decorator_list
        ):
            methods.append(_property(node))
        elif isinstance(node, ast.AsyncFunctionDef):
            text, used = _method(node)
            methods.append(text)
            runtime |= used
    body = "\n".join(methods)
    sources, _ = _sources(tree)
    used = set(re.findall(r"\b[A-Za-z_]\w*\b", HEAD + body)) & set(sources)
    now = sorted(sources[n] for n in used if n in runtime)
    later = sorted(sources[n] for n in used if n not in runtime)
    if later:
        now.append(sources["TYPE_CHECKING"])
    imports = "\n".join(now)
    if later:
        imports += "\n\nif TYPE_CHECKING:\n" + "\n".join("    " + line for line in later)
    text = HEAD.format(imports=imports) + "\n" + body
    return _formatted(text)


def _formatted(text: str) -> str:
    """The text as `ruff check --fix` (import order) and `ruff format` leave it."""
    for command in (["check", "--fix-only", "--quiet", "--select", "I"], ["format"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", str(TARGET), "-"],
            input=text, capture_output=True, text=True, check=True, cwd=ROOT,
        ).stdout  # fmt: skip
    return text


def main(argv: list[str]) -> int:
    fresh = render()
    if "--check" in argv:
        if TARGET.read_text() != fresh:
            print(f"{TARGET.relative_to(ROOT)} is stale: run scripts/twin.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
