"""Provider trouble on demand (scripted_model/faults.py), the models `good` and `broken`,
`USAGE` and the price in the config: in process, through httpx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from opencode_manager.scripted_model import (
    BROKEN_MODEL,
    GOOD_MODEL,
    PRICE,
    Faults,
    RequestLog,
    create_app,
    opencode_config,
)

pytestmark = pytest.mark.anyio
TOOL = {"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def faults(clock: Clock) -> Faults:
    return Faults(clock)


@pytest.fixture
def log() -> RequestLog:
    return RequestLog()


@pytest.fixture
async def client(log: RequestLog, faults: Faults) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(log, faults))
    async with httpx.AsyncClient(transport=transport, base_url="http://scripted") as c:
        yield c


async def ask(
    client: httpx.AsyncClient, text: str, *, model: str = "scripted-model", tools: bool = True
) -> httpx.Response:
    body: dict[str, Any] = {
        "model": model,
        "stream": False,
        "messages": [{"role": "user", "content": text}],
        **({"tools": [TOOL]} if tools else {}),
    }
    return await client.post("/v1/chat/completions", json=body)


async def test_ratelimit_answers_429_with_retry_after_for_the_first_n_requests(
    client: httpx.AsyncClient, log: RequestLog
) -> None:
    prompt = "RATELIMIT 2 0.5 summarise"
    first = await ask(client, prompt)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "1"  # whole seconds, rounded up
    assert first.headers["retry-after-ms"] == "500"
    assert first.json()["error"]["type"] == "rate_limit_error"
    assert (await ask(client, prompt, tools=False)).status_code == 200  # a title call
    assert (await ask(client, "another prompt")).status_code == 200  # counted per prompt
    assert (await ask(client, prompt)).status_code == 429
    third = await ask(client, prompt)
    assert third.status_code == 200
    assert [(r["behaviour"], r["status"]) for r in log.entries()] == [
        ("ratelimit", 429), ("title", 200), ("text", 200), ("ratelimit", 429), ("text", 200)
    ]  # fmt: skip
    default = await ask(client, "RATELIMIT 1 NORETRY")
    assert default.headers["retry-after"] == "1"
    assert default.headers["x-should-retry"] == "false"


async def test_outage_answers_503_for_a_time_window(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    prompt = "OUTAGE 20 then work"
    down = await ask(client, prompt)
    assert down.status_code == 503
    assert down.json()["error"]["type"] == "server_error"
    clock.now += 19.9
    assert (await ask(client, prompt)).status_code == 503
    clock.now += 0.2
    assert (await ask(client, prompt)).status_code == 200


async def test_faults_added_over_http_for_a_count_a_window_or_one_model(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    made = await client.post(
        "/_scripted/faults", json={"status": 429, "count": 2, "retry_after": 3, "model": "good"}
    )
    assert made.status_code == 201
    assert made.json()["count"] == 2
    assert (await ask(client, "hi")).status_code == 200  # another model
    limited = await ask(client, "hi", model="good")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
    listed = (await client.get("/_scripted/faults")).json()
    assert [(f["status"], f["count"], f["model"]) for f in listed] == [(429, 1, "good")]
    assert (await ask(client, "hi", model="good")).status_code == 429
    assert (await ask(client, "hi", model="good")).status_code == 200
    assert (await client.get("/_scripted/faults")).json() == []
    await client.post("/_scripted/faults", json={"status": 503, "seconds": 20})
    assert (await ask(client, "hi")).status_code == 503
    assert (await ask(client, "hi", tools=False)).status_code == 200  # titles go through
    clock.now += 20
    assert (await ask(client, "hi")).status_code == 200
    await client.post("/_scripted/faults", json={"status": 500, "count": 5})
    assert (await client.delete("/_scripted/faults")).json() == {"cleared": True}
    assert (await ask(client, "hi")).status_code == 200


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"status": 200, "count": 1}, "status must be an HTTP error status"),
        ({"status": 429}, "give count and/or seconds"),
        ({"status": 429, "count": 0}, "count must be a positive integer"),
        ({"status": 429, "seconds": -1}, "seconds must be a positive number"),
        ({"status": 429, "count": 1, "retry_after": "x"}, "retry_after must be a number"),
        ([1], "expected a JSON object"),
    ],
)
async def test_a_bad_fault_is_refused(client: httpx.AsyncClient, body: Any, error: str) -> None:
    answer = await client.post("/_scripted/faults", json=body)
    assert answer.status_code == 400
    assert error in answer.json()["error"]


async def test_the_broken_model_refuses_and_the_good_one_answers(
    client: httpx.AsyncClient,
) -> None:
    refused = await ask(client, "hello", model="broken")
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "message": "scripted model 'broken' refuses every request",
        "type": "invalid_request_error",
        "code": "400",
    }
    good = await ask(client, "hello", model="good")
    assert good.json()["choices"][0]["message"]["content"] == "Scripted reply. You said: hello"
    models = (await client.get("/v1/models")).json()["data"]
    assert [m["id"] for m in models] == ["scripted-model", "good", "broken"]


async def test_usage_reports_the_tokens_asked_for(client: httpx.AsyncClient) -> None:
    answer = (await ask(client, "USAGE 120000 4000 count this")).json()
    assert answer["usage"] == {
        "prompt_tokens": 120000, "completion_tokens": 4000, "total_tokens": 124000
    }  # fmt: skip
    title = (await ask(client, "USAGE 120000 4000 count this", tools=False)).json()
    assert title["usage"]["prompt_tokens"] < 100  # titles report their own
    body = {"model": "good", "stream": True, "tools": [TOOL],
            "messages": [{"role": "user", "content": "USAGE 7 3"}]}  # fmt: skip
    streamed = await client.post("/v1/chat/completions", json=body)
    frames = [
        json.loads(line[6:]) for line in streamed.text.split("\n\n") if line[6:].startswith("{")
    ]
    assert frames[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_the_config_prices_good_and_broken_and_the_default_on_request() -> None:
    config = opencode_config("http://127.0.0.1:1/v1")
    models = config["provider"]["scripted"]["models"]
    assert models["good"]["cost"] == dict(PRICE) == {"input": 3.0, "output": 15.0}
    assert models["broken"]["cost"] == dict(PRICE)
    assert "cost" not in models["scripted-model"]
    priced = opencode_config("http://127.0.0.1:1/v1", price={"input": 1.0, "output": 2.0})
    assert priced["provider"]["scripted"]["models"]["scripted-model"]["cost"] == {
        "input": 1.0, "output": 2.0
    }  # fmt: skip
    assert (GOOD_MODEL, BROKEN_MODEL) == ("scripted/good", "scripted/broken")


def test_faults_in_process(clock: Clock) -> None:
    faults = Faults(clock)
    fault = faults.add(503, seconds=5, retry_after=2)
    assert fault.until == 1005
    assert faults.check(model="m", text="x", turn=True) == ("fault", fault)
    assert faults.check(model="m", text="x", turn=False) is None
    clock.now += 5
    assert faults.check(model="m", text="x", turn=True) is None
    assert faults.active() == []
