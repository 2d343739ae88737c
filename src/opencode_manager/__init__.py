"""opencode-manager: run and operate fleets of OpenCode servers safely.

The public API is re-exported here, loaded on first use (so `ocm` and the keeper import only
what they need); everything else is an implementation detail. Start with `AsyncManager` (or
its sync twin `Manager`): every type its methods return is exported here too.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from typing import TYPE_CHECKING, Any, cast

__version__ = "0.1.0"


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
    """httpx's `__init__` imports its command-line client, and with it click, rich and
    pygments: about 25 ms of every command, for a CLI nothing here runs. This import hook
    answers that first import with a stand-in whose `main` loads the real client when called
    (so `httpx.main` still works), then steps aside. It is a meta path finder and a loader
    by their protocols: `importlib.abc` itself would cost every process ~10 ms."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "httpx._main":
            return None
        sys.meta_path.remove(self)
        return importlib.machinery.ModuleSpec(name, cast(Any, self))  # a loader by protocol

    def create_module(self, spec: Any) -> types.ModuleType:
        return _HttpxCliStandIn(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


if "httpx" not in sys.modules and not any(isinstance(f, _DeferHttpxCli) for f in sys.meta_path):
    sys.meta_path.insert(0, _DeferHttpxCli())

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
    "EventFilter": ("observe.eventview", "Filter"),
    "EventFolder": ("observe.eventview", "Folder"),
    "EventKind": ("models", "EventKind"),
    "EventLine": ("observe.eventview", "Line"),
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
    "LogLine": ("instances.logs", "LogLine"),
    "Manager": ("manager", "Manager"),
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
    "error_summary": ("text", "error_summary"),
    "load_schema": ("tasks.structured", "load_schema"),
    "one_line": ("text", "one_line"),
    "human_size": ("text", "human_size"),
    "strip_ansi": ("text", "strip_ansi"),
    "TaskOutcome": ("tasks.summary", "TaskOutcome"),
    "TaskRecord": ("models", "TaskRecord"),
    "TaskStatus": ("models", "TaskStatus"),
    "UsageError": ("errors", "UsageError"),
    "find_binary": ("instances.binary", "find_binary"),
    "install": ("instances.binary", "install"),
    "is_loopback_host": ("instances.spec", "is_loopback_host"),
    "listener": ("sockets", "listener"),
    "load_secret": ("secretfile", "load_secret"),
    "serve_app": ("sockets", "serve_app"),
    "Secret": ("secretfile", "Secret"),
    "parse_batch_file": ("tasks.batchfile", "parse"),
    "parse_duration": ("durations", "parse_duration"),
    "parse_port": ("instances.spec", "parse_port"),
    "parse_port_range": ("instances.spec", "parse_port_range"),
    "parse_size": ("durations", "parse_size"),
}

if TYPE_CHECKING:
    from .client import AsyncOpencodeClient, Endpoint, OpencodeClient
    from .client.types import Event, Message, Part, Session
    from .durations import parse_duration, parse_size
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
    from .instances.spec import (
        LOG_LEVELS,
        RESTART_POLICIES,
        Supervision,
        is_loopback_host,
        parse_port,
        parse_port_range,
    )
    from .instances.systemd import SystemdExport
    from .lines import MIN_OPENCODE_VERSION
    from .manager import AsyncManager, Manager
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
    from .observe.eventview import Filter as EventFilter
    from .observe.eventview import Folder as EventFolder
    from .observe.eventview import Line as EventLine
    from .observe.fleetview import FleetFrame, FleetRow, FleetTotals
    from .observe.monitor import Received
    from .secretfile import Secret, load_secret
    from .settings import PINNED_OPENCODE_VERSION, Settings
    from .sockets import listener, serve_app
    from .tasks.batch import BatchOptions, BatchProgress
    from .tasks.batchfile import BatchTask
    from .tasks.batchfile import decode as decode_batch_file
    from .tasks.batchfile import parse as parse_batch_file
    from .tasks.dispatch import TaskOptions
    from .tasks.jsonl import JsonlEmitter
    from .tasks.runner import Observer
    from .tasks.sessions import PendingAsk, SessionRow
    from .tasks.store import PruneReport
    from .tasks.structured import load_schema
    from .tasks.summary import BatchSummary, TaskOutcome
    from .tasks.tracker import Ask
    from .tasks.worktree import Worktree, WorktreeRemoval, WorktreeRequest, WorktreeRow
    from .text import error_summary, human_size, one_line, strip_ansi


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
    "EventFilter",
    "EventFolder",
    "EventKind",
    "EventLine",
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
    "Received",
    "RegistryBackup",
    "ResourceSample",
    "RestoreReport",
    "ResurrectReport",
    "SaveReport",
    "Secret",
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
    "error_summary",
    "find_binary",
    "human_size",
    "install",
    "is_loopback_host",
    "listener",
    "load_schema",
    "load_secret",
    "one_line",
    "parse_batch_file",
    "parse_duration",
    "parse_port",
    "parse_port_range",
    "parse_size",
    "serve_app",
    "strip_ansi",
]
