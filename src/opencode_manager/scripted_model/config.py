"""OpenCode configuration pointing at a scripted model server."""

from __future__ import annotations

import json
from typing import Any

PROVIDER_ID = "scripted"
MODEL_ID = "scripted-model"
MODEL = f"{PROVIDER_ID}/{MODEL_ID}"


def opencode_config(base_url: str) -> dict[str, Any]:
    """The ``OPENCODE_CONFIG_CONTENT`` dict making OpenCode use the scripted model at base_url."""
    return {
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Scripted",
                "options": {"baseURL": base_url, "apiKey": "unused"},
                "models": {MODEL_ID: {"name": "Scripted model"}},
            }
        },
        "model": MODEL,
        "small_model": MODEL,
    }


def opencode_env(base_url: str) -> dict[str, str]:
    """Environment variables for an ``opencode serve`` process using the scripted model."""
    return {
        "OPENCODE_CONFIG_CONTENT": json.dumps(opencode_config(base_url)),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
    }
