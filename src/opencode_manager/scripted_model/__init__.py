"""Scripted OpenAI-compatible chat-completions server that lets OpenCode run offline."""

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
