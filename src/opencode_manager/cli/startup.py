"""What `ocm` does first, before any command module is imported: keep start-up lean.

httpx's `__init__` imports its own command-line client, and with it click's and rich's
formatting and pygments: about 25 ms of every `ocm` command that touches HTTP, for a client
nothing here runs. `defer_httpx_cli` answers that one import with a stand-in whose `main`
loads the real client when called (so `httpx.main` still works), then steps aside.

It is the CLI's business only: installed by `opencode_manager.cli` (the console script and
`python -m opencode_manager`), never by importing the library, which leaves a user's
interpreter as it found it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from typing import Any, cast


class _HttpxCliStandIn(types.ModuleType):
    """What httpx gets as its `_main` (see `_DeferHttpxCli`)."""

    def __getattr__(self, name: str) -> Any:
        if name != "main":
            raise AttributeError(name)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]  # from now on `import httpx._main` is the real one
        return _httpx_main


def _httpx_main(*args: Any, **kwargs: Any) -> Any:
    """`httpx.main`: the real command-line client, loaded when it is run."""
    real = importlib.import_module("httpx._main")
    return real.main(*args, **kwargs)


class _DeferHttpxCli:
    """A meta path finder and a loader by their protocols (`importlib.abc` itself would cost
    every process ~10 ms), for `httpx._main` only, used once."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "httpx._main":
            return None
        sys.meta_path.remove(self)
        return importlib.machinery.ModuleSpec(name, cast(Any, self))  # a loader by protocol

    def create_module(self, spec: Any) -> types.ModuleType:
        return _HttpxCliStandIn(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def defer_httpx_cli() -> None:
    """Install the hook, unless httpx is loaded already (then it is too late) or it is in."""
    if "httpx" in sys.modules or any(isinstance(f, _DeferHttpxCli) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _DeferHttpxCli())
