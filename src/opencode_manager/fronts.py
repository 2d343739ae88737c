"""What the fronts (`cli/`, `mcpserver/`, `dashboard/`) share beyond the library's API.

`opencode_manager.__all__` is for library users: the facade, what it takes and returns, and
the errors. The fronts also need helpers that are no part of that promise: parsing command-line
values with the CLI's messages, text for terminals, serving an ASGI app on a socket bound
beforehand, the fronts' own tokens, the view of events that `ocm monitor` and the dashboard
show, and the stored records read without the facade (`Records`, for the CLI's read commands).
They live here, loaded on first use like the package's own exports, so `ocm` imports only
what a command needs. A front imports the library from `opencode_manager` and these from here,
and nothing else (tests/test_layout.py checks it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> (module, attribute in it)
_EXPORTS: dict[str, tuple[str, str]] = {
    "EventFilter": ("observe.eventview", "Filter"),
    "EventFolder": ("observe.eventview", "Folder"),
    "EventLine": ("observe.eventview", "Line"),
    "Records": ("tasks.records", "Records"),
    "Secret": ("secretfile", "Secret"),
    "error_summary": ("text", "error_summary"),
    "ago": ("text", "ago"),
    "human_duration": ("text", "human_duration"),
    "human_size": ("text", "human_size"),
    "is_loopback_host": ("instances.spec", "is_loopback_host"),
    "listener": ("sockets", "listener"),
    "load_schema": ("tasks.structured", "load_schema"),
    "load_secret": ("secretfile", "load_secret"),
    "one_line": ("text", "one_line"),
    "parse_duration": ("durations", "parse_duration"),
    "parse_port": ("instances.spec", "parse_port"),
    "parse_port_range": ("instances.spec", "parse_port_range"),
    "parse_size": ("durations", "parse_size"),
    "serve_app": ("sockets", "serve_app"),
    "strip_ansi": ("text", "strip_ansi"),
}

if TYPE_CHECKING:
    from .durations import parse_duration, parse_size
    from .instances.spec import is_loopback_host, parse_port, parse_port_range
    from .observe.eventview import Filter as EventFilter
    from .observe.eventview import Folder as EventFolder
    from .observe.eventview import Line as EventLine
    from .secretfile import Secret, load_secret
    from .sockets import listener, serve_app
    from .tasks.records import Records
    from .tasks.structured import load_schema
    from .text import ago, error_summary, human_duration, human_size, one_line, strip_ansi


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'opencode_manager.fronts' has no attribute {name!r}")
    module, attribute = target
    value = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "EventFilter",
    "EventFolder",
    "EventLine",
    "Records",
    "Secret",
    "ago",
    "error_summary",
    "human_duration",
    "human_size",
    "is_loopback_host",
    "listener",
    "load_schema",
    "load_secret",
    "one_line",
    "parse_duration",
    "parse_port",
    "parse_port_range",
    "parse_size",
    "serve_app",
    "strip_ansi",
]
