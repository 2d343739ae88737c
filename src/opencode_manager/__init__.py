"""opencode-manager: run and operate fleets of OpenCode servers safely.

The public API is re-exported here; everything else is an implementation detail.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .binary import Binary, find_binary, install
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
from .manager import Check, CleanupReport, Manager, StopResult
from .models import InstanceInfo, InstanceRecord, InstanceSpec, ProcessIdentity, State, Status
from .settings import PINNED_OPENCODE_VERSION, Settings

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
    "UsageError",
    "__version__",
    "find_binary",
    "install",
]
