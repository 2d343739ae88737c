"""The keeper's warm-up model over a real loopback socket: it answers only while a warm-up
runs, in the scripted model's wire form."""

from __future__ import annotations

import json

import httpx
import pytest

from opencode_manager.keeper.warmmodel import REFUSAL, WarmupModel

pytestmark = [pytest.mark.timeout(20), pytest.mark.anyio]

TOOL = {"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}


def _turn(text: str) -> dict[str, object]:
    return {
        "model": "warmup",
        "stream": True,
        "messages": [{"role": "user", "content": text}],
        "tools": [TOOL],
    }


async def test_it_refuses_outside_a_warm_up_and_answers_during_one() -> None:
    model = WarmupModel()
    base = await model.start()
    assert base.startswith("http://127.0.0.1:")
    assert base.endswith("/v1")
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            refused = await client.post("/chat/completions", json=_turn("hello"))
            assert refused.status_code == 400  # neither line retries a 400
            assert refused.headers["x-should-retry"] == "false"
            assert refused.json()["error"]["message"] == REFUSAL
            assert (model.requests, model.refused) == (0, 1)

            with model.serving():
                shell = await client.post("/chat/completions", json=_turn("BASH: true"))
                text = await client.post("/chat/completions", json=_turn("ocm warm-up"))
            assert shell.status_code == 200
            assert shell.headers["content-type"].startswith("text/event-stream")
            calls = [
                call["function"]
                for line in shell.text.splitlines()
                if line.startswith("data: {")
                for choice in json.loads(line[6:])["choices"]
                for call in choice.get("delta", {}).get("tool_calls") or []
            ]
            assert calls[0]["name"] == "bash"
            arguments = "".join(c.get("arguments", "") for c in calls)
            assert json.loads(arguments)["command"] == "true"
            assert "[DONE]" in text.text
            assert model.requests == 2

            listed = await client.get("/models")
            assert listed.json()["data"][0]["id"] == "warmup"
    finally:
        await model.close()
