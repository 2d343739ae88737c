"""Scripted OpenAI-compatible chat-completions server that lets OpenCode run offline.

The names below load on first use: the keeper serves its warm-up model from the pure
planning logic (`script`, `frames`) and must not import the server's starlette and uvicorn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import RequestLog, RequestRecord, ScriptedResponse, create_app
    from .config import (
        BROKEN_MODEL,
        GOOD_MODEL,
        MODEL,
        MODEL_ID,
        PRICE,
        PROVIDER_ID,
        opencode_config,
        opencode_env,
    )
    from .faults import Fault, Faults
    from .script import (
        Pause,
        Plan,
        RawData,
        ReasoningDelta,
        ScriptedError,
        Step,
        TextDelta,
        ToolCall,
        Usage,
        plan_response,
    )
    from .server import ScriptedModelServer, serve_forever

#: Each public name and the module that defines it.
_EXPORTS = {
    "RequestLog": "app",
    "RequestRecord": "app",
    "ScriptedResponse": "app",
    "create_app": "app",
    "BROKEN_MODEL": "config",
    "GOOD_MODEL": "config",
    "MODEL": "config",
    "MODEL_ID": "config",
    "PRICE": "config",
    "PROVIDER_ID": "config",
    "opencode_config": "config",
    "opencode_env": "config",
    "Fault": "faults",
    "Faults": "faults",
    "Pause": "script",
    "Plan": "script",
    "RawData": "script",
    "ReasoningDelta": "script",
    "ScriptedError": "script",
    "Step": "script",
    "TextDelta": "script",
    "ToolCall": "script",
    "Usage": "script",
    "plan_response": "script",
    "ScriptedModelServer": "server",
    "serve_forever": "server",
}

__all__ = [
    "BROKEN_MODEL",
    "GOOD_MODEL",
    "MODEL",
    "MODEL_ID",
    "PRICE",
    "PROVIDER_ID",
    "Fault",
    "Faults",
    "Pause",
    "Plan",
    "RawData",
    "ReasoningDelta",
    "RequestLog",
    "RequestRecord",
    "ScriptedError",
    "ScriptedModelServer",
    "ScriptedResponse",
    "Step",
    "TextDelta",
    "ToolCall",
    "Usage",
    "create_app",
    "opencode_config",
    "opencode_env",
    "plan_response",
    "serve_forever",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
