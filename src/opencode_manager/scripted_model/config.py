"""OpenCode configuration pointing at a scripted model server.

Three models: `scripted-model` (the default; free unless `price` is given), `good` (answers
like the default) and `broken` (refuses every request with 400), both priced at `PRICE`, so
a fallback from `scripted/broken` to `scripted/good` and a budget can be tested offline. A
price is OpenCode's own provider config, `models.<id>.cost` in USD per million tokens; both
lines compute a step's `cost` from it and the usage the model reports (probed on 1.18.33 and
2.1.2: `hello there` on `good` cost $0.004689 and $0.003564, the lines' prompts differing).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .script import BROKEN_MODEL_NAME, DEFAULT_MODEL_NAME, GOOD_MODEL_NAME

PROVIDER_ID = "scripted"
MODEL_ID = DEFAULT_MODEL_NAME
MODEL = f"{PROVIDER_ID}/{MODEL_ID}"
GOOD_MODEL = f"{PROVIDER_ID}/{GOOD_MODEL_NAME}"
BROKEN_MODEL = f"{PROVIDER_ID}/{BROKEN_MODEL_NAME}"
#: USD per million tokens (input, output), as a provider's price list says them.
PRICE: Mapping[str, float] = {"input": 3.0, "output": 15.0}


def opencode_config(base_url: str, *, price: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The ``OPENCODE_CONFIG_CONTENT`` dict making OpenCode use the scripted model at base_url
    (`price`: also give the default model one, so every task has a cost)."""
    default: dict[str, Any] = {"name": "Scripted model"}
    if price is not None:
        default["cost"] = dict(price)
    return {
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Scripted",
                "options": {"baseURL": base_url, "apiKey": "unused"},
                "models": {
                    MODEL_ID: default,
                    GOOD_MODEL_NAME: {"name": "Scripted good model", "cost": dict(PRICE)},
                    BROKEN_MODEL_NAME: {"name": "Scripted broken model", "cost": dict(PRICE)},
                },
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
