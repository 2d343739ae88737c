"""opencode-manager: run and operate fleets of OpenCode servers safely.

The public API is re-exported here, loaded on first use (so `ocm` and the keeper import only
what they need); everything else is an implementation detail.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "PINNED_OPENCODE_VERSION": "settings",
    "AsyncOpencodeClient": "client",
    "Binary": "instances.binary",
    "BinaryError": "errors",
    "Check": "manager",
    "CleanupReport": "manager",
    "ConflictError": "errors",
    "Endpoint": "client",
    "InstanceInfo": "models",
    "InstanceRecord": "models",
    "InstanceSpec": "models",
    "Manager": "manager",
    "NotFoundError": "errors",
    "OcmError": "errors",
    "OpencodeClient": "client",
    "ProcessIdentity": "models",
    "ServerError": "errors",
    "Settings": "settings",
    "StartError": "errors",
    "State": "models",
    "StateError": "errors",
    "Status": "models",
    "StopResult": "manager",
    "TaskOptions": "tasks.dispatch",
    "TaskRecord": "models",
    "TaskStatus": "models",
    "UsageError": "errors",
    "find_binary": "instances.binary",
    "install": "instances.binary",
}

if TYPE_CHECKING:
    from .client import AsyncOpencodeClient, Endpoint, OpencodeClient
    from .errors import (
        BinaryError,
        ConflictError,
        NotFoundError,
        OcmError,
        ServerError,
        StartError,
        StateError,
        UsageError,
    )
    from .instances.binary import Binary, find_binary, install
    from .manager import Check, CleanupReport, Manager, StopResult
    from .models import (
        InstanceInfo,
        InstanceRecord,
        InstanceSpec,
        ProcessIdentity,
        State,
        Status,
        TaskRecord,
        TaskStatus,
    )
    from .settings import PINNED_OPENCODE_VERSION, Settings
    from .tasks.dispatch import TaskOptions


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'opencode_manager' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "PINNED_OPENCODE_VERSION",
    "AsyncOpencodeClient",
    "Binary",
    "BinaryError",
    "Check",
    "CleanupReport",
    "ConflictError",
    "Endpoint",
    "InstanceInfo",
    "InstanceRecord",
    "InstanceSpec",
    "Manager",
    "NotFoundError",
    "OcmError",
    "OpencodeClient",
    "ProcessIdentity",
    "ServerError",
    "Settings",
    "StartError",
    "State",
    "StateError",
    "Status",
    "StopResult",
    "TaskOptions",
    "TaskRecord",
    "TaskStatus",
    "UsageError",
    "__version__",
    "find_binary",
    "install",
]
