"""opencode-manager: run and operate fleets of OpenCode servers safely.

The public API is re-exported here, loaded on first use (so `ocm` and the keeper import only
what they need); everything else is an implementation detail. Start with `AsyncManager` (or
its sync twin `Manager`): every type its methods take or return is exported here too, and the
errors. `__all__` is the library's promise and nothing more: helpers only the fronts use
(argument parsing, terminal text, serving a web app) live in `opencode_manager.fronts`, and
importing the package changes nothing in the interpreter (no import hooks: those are the CLI's).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"


# name -> (module, attribute in it)
_EXPORTS: dict[str, tuple[str, str]] = {
    "DEFAULT_START_TIMEOUT": ("instances.lifecycle", "DEFAULT_START_TIMEOUT"),
    "DEFAULT_STOP_TIMEOUT": ("instances.lifecycle", "DEFAULT_STOP_TIMEOUT"),
    "LOG_LEVELS": ("instances.spec", "LOG_LEVELS"),
    "MIN_OPENCODE_VERSION": ("lines", "MIN_OPENCODE_VERSION"),
    "PINNED_OPENCODE_VERSION": ("settings", "PINNED_OPENCODE_VERSION"),
    "RESTART_POLICIES": ("instances.spec", "RESTART_POLICIES"),
    "Ask": ("tasks.tracker", "Ask"),
    "AskPolicy": ("models", "AskPolicy"),
    "AsyncManager": ("manager", "AsyncManager"),
    "AsyncOpencodeClient": ("client", "AsyncOpencodeClient"),
    "BatchOptions": ("tasks.batch", "BatchOptions"),
    "BatchProgress": ("tasks.batch", "BatchProgress"),
    "BatchStatus": ("models", "BatchStatus"),
    "BatchSummary": ("tasks.summary", "BatchSummary"),
    "BatchTask": ("tasks.batchfile", "BatchTask"),
    "Binary": ("instances.binary", "Binary"),
    "BinaryError": ("errors", "BinaryError"),
    "Check": ("instances.doctor", "Check"),
    "CleanupReport": ("instances.lifecycle", "CleanupReport"),
    "ConflictError": ("errors", "ConflictError"),
    "Endpoint": ("client", "Endpoint"),
    "Event": ("client.types", "Event"),
    "EventKind": ("models", "EventKind"),
    "FleetChange": ("instances.converge", "Change"),
    "FleetFile": ("instances.fleetfile", "FleetFile"),
    "FleetFileError": ("instances.fleetfile", "FleetFileError"),
    "FleetFrame": ("observe.fleetview", "FleetFrame"),
    "FleetRow": ("observe.fleetview", "FleetRow"),
    "FleetTotals": ("observe.fleetview", "FleetTotals"),
    "Interrupted": ("errors", "Interrupted"),
    "InstanceInfo": ("models", "InstanceInfo"),
    "InstanceRecord": ("models", "InstanceRecord"),
    "InstanceSpec": ("models", "InstanceSpec"),
    "JsonlEmitter": ("tasks.jsonl", "JsonlEmitter"),
    "LifecycleEvent": ("models", "LifecycleEvent"),
    "Limit": ("limits.policy", "Limit"),
    "LimitStatus": ("limits.table", "LimitStatus"),
    "QueuedTicket": ("limits.table", "QueuedTicket"),
    "LogLine": ("instances.logs", "LogLine"),
    "Manager": ("twin", "Manager"),
    "Message": ("client.types", "Message"),
    "NotFoundError": ("errors", "NotFoundError"),
    "Observer": ("tasks.runner", "Observer"),
    "OcmError": ("errors", "OcmError"),
    "OpencodeClient": ("client", "OpencodeClient"),
    "Part": ("client.types", "Part"),
    "ProcessIdentity": ("models", "ProcessIdentity"),
    "PruneReport": ("tasks.store", "PruneReport"),
    "Received": ("observe.monitor", "Received"),
    "ResurrectReport": ("instances.dump", "ResurrectReport"),
    "RegistryBackup": ("instances.restore", "Backup"),
    "RestoreReport": ("instances.restore", "RestoreReport"),
    "SaveReport": ("instances.dump", "SaveReport"),
    "SystemdExport": ("instances.systemd", "SystemdExport"),
    "UpReport": ("instances.compose", "UpReport"),
    "ResourceSample": ("models", "ResourceSample"),
    "ServerError": ("errors", "ServerError"),
    "ServerRefused": ("errors", "ServerRefused"),
    "ServerTimeout": ("errors", "ServerTimeout"),
    "ServerUnreachable": ("errors", "ServerUnreachable"),
    "TurnLost": ("errors", "TurnLost"),
    "Session": ("client.types", "Session"),
    "SessionCounts": ("instances.inventory", "SessionCounts"),
    "SessionNotFound": ("errors", "SessionNotFound"),
    "PendingAsk": ("tasks.sessions", "PendingAsk"),
    "SessionRow": ("tasks.sessions", "SessionRow"),
    "Settings": ("settings", "Settings"),
    "StartError": ("errors", "StartError"),
    "StartProgress": ("instances.lifecycle", "StartProgress"),
    "State": ("models", "State"),
    "StateError": ("errors", "StateError"),
    "Status": ("models", "Status"),
    "StatusReport": ("instances.inventory", "StatusReport"),
    "StopResult": ("instances.lifecycle", "StopResult"),
    "Supervision": ("instances.spec", "Supervision"),
    "TaskOptions": ("tasks.dispatch", "TaskOptions"),
    "Worktree": ("tasks.worktree", "Worktree"),
    "WorktreeRemoval": ("tasks.worktree", "WorktreeRemoval"),
    "WorktreeRequest": ("tasks.worktree", "WorktreeRequest"),
    "WorktreeRow": ("tasks.worktree", "WorktreeRow"),
    "decode_batch_file": ("tasks.batchfile", "decode"),
    "TaskOutcome": ("tasks.summary", "TaskOutcome"),
    "TaskRecord": ("models", "TaskRecord"),
    "TaskStatus": ("models", "TaskStatus"),
    "UsageError": ("errors", "UsageError"),
    "find_binary": ("instances.binary", "find_binary"),
    "install": ("instances.binary", "install"),
    "parse_batch_file": ("tasks.batchfile", "parse"),
}

if TYPE_CHECKING:
    from .client import AsyncOpencodeClient, Endpoint, OpencodeClient
    from .client.types import Event, Message, Part, Session
    from .errors import (
        BinaryError,
        ConflictError,
        Interrupted,
        NotFoundError,
        OcmError,
        ServerError,
        ServerRefused,
        ServerTimeout,
        ServerUnreachable,
        SessionNotFound,
        StartError,
        StateError,
        TurnLost,
        UsageError,
    )
    from .instances.binary import Binary, find_binary, install
    from .instances.compose import UpReport
    from .instances.converge import Change as FleetChange
    from .instances.doctor import Check
    from .instances.dump import ResurrectReport, SaveReport
    from .instances.fleetfile import FleetFile, FleetFileError
    from .instances.inventory import SessionCounts, StatusReport
    from .instances.lifecycle import (
        DEFAULT_START_TIMEOUT,
        DEFAULT_STOP_TIMEOUT,
        CleanupReport,
        StartProgress,
        StopResult,
    )
    from .instances.logs import LogLine
    from .instances.restore import Backup as RegistryBackup
    from .instances.restore import RestoreReport
    from .instances.spec import LOG_LEVELS, RESTART_POLICIES, Supervision
    from .instances.systemd import SystemdExport
    from .limits.policy import Limit
    from .limits.table import LimitStatus, QueuedTicket
    from .lines import MIN_OPENCODE_VERSION
    from .manager import AsyncManager
    from .models import (
        AskPolicy,
        BatchStatus,
        EventKind,
        InstanceInfo,
        InstanceRecord,
        InstanceSpec,
        LifecycleEvent,
        ProcessIdentity,
        ResourceSample,
        State,
        Status,
        TaskRecord,
        TaskStatus,
    )
    from .observe.fleetview import FleetFrame, FleetRow, FleetTotals
    from .observe.monitor import Received
    from .settings import PINNED_OPENCODE_VERSION, Settings
    from .tasks.batch import BatchOptions, BatchProgress
    from .tasks.batchfile import BatchTask
    from .tasks.batchfile import decode as decode_batch_file
    from .tasks.batchfile import parse as parse_batch_file
    from .tasks.dispatch import TaskOptions
    from .tasks.jsonl import JsonlEmitter
    from .tasks.runner import Observer
    from .tasks.sessions import PendingAsk, SessionRow
    from .tasks.store import PruneReport
    from .tasks.summary import BatchSummary, TaskOutcome
    from .tasks.tracker import Ask
    from .tasks.worktree import Worktree, WorktreeRemoval, WorktreeRequest, WorktreeRow
    from .twin import Manager


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'opencode_manager' has no attribute {name!r}")
    module, attribute = target
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "DEFAULT_START_TIMEOUT",
    "DEFAULT_STOP_TIMEOUT",
    "LOG_LEVELS",
    "MIN_OPENCODE_VERSION",
    "PINNED_OPENCODE_VERSION",
    "RESTART_POLICIES",
    "Ask",
    "AskPolicy",
    "AsyncManager",
    "AsyncOpencodeClient",
    "BatchOptions",
    "BatchProgress",
    "BatchStatus",
    "BatchSummary",
    "BatchTask",
    "Binary",
    "BinaryError",
    "Check",
    "CleanupReport",
    "ConflictError",
    "Endpoint",
    "Event",
    "EventKind",
    "FleetChange",
    "FleetFile",
    "FleetFileError",
    "FleetFrame",
    "FleetRow",
    "FleetTotals",
    "InstanceInfo",
    "InstanceRecord",
    "InstanceSpec",
    "Interrupted",
    "JsonlEmitter",
    "LifecycleEvent",
    "Limit",
    "LimitStatus",
    "LogLine",
    "Manager",
    "Message",
    "NotFoundError",
    "Observer",
    "OcmError",
    "OpencodeClient",
    "Part",
    "PendingAsk",
    "ProcessIdentity",
    "PruneReport",
    "QueuedTicket",
    "Received",
    "RegistryBackup",
    "ResourceSample",
    "RestoreReport",
    "ResurrectReport",
    "SaveReport",
    "ServerError",
    "ServerRefused",
    "ServerTimeout",
    "ServerUnreachable",
    "Session",
    "SessionCounts",
    "SessionNotFound",
    "SessionRow",
    "Settings",
    "StartError",
    "StartProgress",
    "State",
    "StateError",
    "Status",
    "StatusReport",
    "StopResult",
    "Supervision",
    "SystemdExport",
    "TaskOptions",
    "TaskOutcome",
    "TaskRecord",
    "TaskStatus",
    "TurnLost",
    "UpReport",
    "UsageError",
    "Worktree",
    "WorktreeRemoval",
    "WorktreeRequest",
    "WorktreeRow",
    "__version__",
    "decode_batch_file",
    "find_binary",
    "install",
    "parse_batch_file",
]
