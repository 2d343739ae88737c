"""Scripted OpenAI-compatible chat-completions server that lets OpenCode run offline."""

from .app import RequestLog, RequestRecord, ScriptedResponse, create_app
from .config import MODEL, MODEL_ID, PROVIDER_ID, opencode_config, opencode_env
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
    "MODEL",
    "MODEL_ID",
    "PROVIDER_ID",
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
