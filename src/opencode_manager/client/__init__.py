"""A thin client for the OpenCode server's HTTP API: one pure core, sync and async shells.

Names load on first use, so `client.endpoint` (and the keeper) can be imported without httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AsyncOpencode2Client": "opencode2",
    "AsyncOpencodeClient": "shells",
    "Endpoint": "endpoint",
    "OpencodeClient": "shells",
    "Operation": "core",
    "client_for": "dialect",
    "http_options": "shells",
}

if TYPE_CHECKING:
    from .core import Operation
    from .dialect import client_for
    from .endpoint import Endpoint
    from .opencode2 import AsyncOpencode2Client
    from .shells import AsyncOpencodeClient, OpencodeClient, http_options


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncOpencode2Client",
    "AsyncOpencodeClient",
    "Endpoint",
    "OpencodeClient",
    "Operation",
    "client_for",
    "http_options",
]
