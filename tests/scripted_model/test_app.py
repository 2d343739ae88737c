"""Tests of the scripted-model ASGI app, driven in-process through httpx."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.types import Message, Scope

from opencode_manager.scripted_model import RequestLog, create_app

pytestmark = pytest.mark.anyio

BASH_TOOL = {
    "type": "function",
    "function": {
        "name": "bash",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
    },
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def log() -> RequestLog:
    return RequestLog()


@pytest.fixture
async def client(log: RequestLog) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(log))
    async with httpx.AsyncClient(transport=transport, base_url="http://scripted") as c:
        yield c


def body(text: str, *, stream: bool = True, tools: bool = True) -> dict[str, Any]:
    return {
        "model": "scripted-model",
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
        **({"tools": [BASH_TOOL]} if tools else {}),
    }


def sse_payloads(raw: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    frames = [f for f in raw.split("\n\n") if f.strip()]
    assert all(f.startswith("data: ") for f in frames)
    return [f[len("data: ") :] for f in frames]


async def chat(client: httpx.AsyncClient, text: str, **kwargs: Any) -> httpx.Response:
    return await client.post("/v1/chat/completions", json=body(text, **kwargs))


async def test_models(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["scripted-model", "good", "broken"]


async def test_text_stream_frames(client: httpx.AsyncClient) -> None:
    response = await chat(client, "hello there")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    frames = [json.loads(p) for p in payloads[:-1]]
    content = [f for f in frames if f["choices"] and "content" in f["choices"][0]["delta"]]
    assert len(content) >= 3
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(f["object"] == "chat.completion.chunk" for f in frames)
    assert all(f["model"] == "scripted-model" for f in frames)
    assert len({f["id"] for f in frames}) == 1
    text = "".join(f["choices"][0]["delta"]["content"] for f in content)
    assert text == "Scripted reply. You said: hello there"
    finish, usage = frames[-2], frames[-1]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == len(text.split())
    assert usage["usage"]["prompt_tokens"] == 2
    assert usage["usage"]["total_tokens"] == usage["usage"]["completion_tokens"] + 2


async def test_tool_call_frames(client: httpx.AsyncClient) -> None:
    response = await chat(client, "BASH: echo hi")
    frames = [json.loads(p) for p in sse_payloads(response.text)[:-1]]
    calls = [
        c for f in frames if f["choices"] for c in f["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert len(calls) >= 2  # arguments arrive split over frames
    assert calls[0]["id"] == "call_1"
    assert calls[0]["type"] == "function"
    assert calls[0]["function"]["name"] == "bash"
    assert all(c["index"] == 0 for c in calls)
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(arguments) == {"command": "echo hi"}
    assert frames[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_reasoning_frames(client: httpx.AsyncClient) -> None:
    response = await chat(client, "REASON")
    frames = [json.loads(p) for p in sse_payloads(response.text)[:-1]]
    deltas = [f["choices"][0]["delta"] for f in frames if f["choices"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    assert reasoning == "Let me think about this carefully"
    assert "reasoning_content" in deltas[0]


async def test_non_streaming_text_and_tool_call(client: httpx.AsyncClient) -> None:
    response = await chat(client, "hi", stream=False)
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == "Scripted reply. You said: hi"
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["total_tokens"] > 0
    data = (await chat(client, "BASH: ls", stream=False)).json()
    (call,) = data["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"command": "ls"}
    assert data["choices"][0]["finish_reason"] == "tool_calls"


async def test_title_request(client: httpx.AsyncClient) -> None:
    data = (await chat(client, "ERR500", stream=False, tools=False)).json()
    assert data["choices"][0]["message"]["content"] == "Scripted Title"


@pytest.mark.parametrize("status", [500, 400, 401, 429])
async def test_error_status(client: httpx.AsyncClient, status: int) -> None:
    response = await chat(client, f"ERR{status}")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] == f"scripted error {status} from scripted model"
    assert error["code"] == str(status)


@pytest.mark.parametrize(("status", "header"), [(500, "20"), (429, "20"), (400, None), (401, None)])
async def test_retryable_errors_ask_for_a_quick_retry(
    client: httpx.AsyncClient, status: int, header: str | None
) -> None:
    # OpenCode honours retry-after-ms, so its 5 retries take milliseconds instead of ~75 s.
    response = await chat(client, f"ERR{status}")
    assert response.headers.get("retry-after-ms") == header
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)


async def test_malformed_frame_then_finish(client: httpx.AsyncClient) -> None:
    payloads = sse_payloads((await chat(client, "MALFORMED")).text)
    assert "{this is not json" in payloads
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-3])["choices"][0]["finish_reason"] == "stop"


async def test_cutoff_has_no_finish(client: httpx.AsyncClient) -> None:
    payloads = sse_payloads((await chat(client, "CUTOFF")).text)
    assert len(payloads) == 2
    frames = [json.loads(p) for p in payloads]
    assert all(f["choices"][0]["finish_reason"] is None for f in frames)


async def test_empty(client: httpx.AsyncClient) -> None:
    payloads = sse_payloads((await chat(client, "EMPTY")).text)
    frames = [json.loads(p) for p in payloads[:-1]]
    assert not any(f["choices"] and f["choices"][0]["delta"].get("content") for f in frames)
    assert frames[-2]["choices"][0]["finish_reason"] == "stop"


async def test_sleep_waits(client: httpx.AsyncClient) -> None:
    start = time.monotonic()
    response = await chat(client, "SLEEP 0.3")
    assert time.monotonic() - start >= 0.3
    assert sse_payloads(response.text)[-1] == "[DONE]"


async def test_invalid_body(client: httpx.AsyncClient, log: RequestLog) -> None:
    response = await client.post("/v1/chat/completions", content=b"not json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert log.entries()[-1]["status"] == 400


async def test_request_log(client: httpx.AsyncClient, log: RequestLog) -> None:
    await chat(client, "BASH: echo hi")
    await chat(client, "plain", stream=False, tools=False)
    entries = log.entries()
    assert [e["behaviour"] for e in entries] == ["bash", "title"]
    first = entries[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["model"] == "scripted-model"
    assert first["has_tools"] is True
    assert first["n_tools"] == 1
    assert first["last_user_text"] == "BASH: echo hi"
    assert first["stream"] is True
    assert first["status"] == 200
    assert entries[1]["stream"] is False
    assert entries[1]["has_tools"] is False

    over_http = (await client.get("/_scripted/requests")).json()
    assert [e["behaviour"] for e in over_http] == ["bash", "title"]
    assert (await client.delete("/_scripted/requests")).status_code == 200
    assert (await client.get("/_scripted/requests")).json() == []
    assert len(log) == 0


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/_scripted/health")
    assert response.json()["status"] == "ok"


async def test_disconnect_cancels_header_delay(log: RequestLog) -> None:
    """A client that goes away while we wait must not keep the handler alive."""
    app = create_app(log)
    request_body = json.dumps(body("SLEEPHDR 30")).encode()
    incoming: list[Message] = [
        {"type": "http.request", "body": request_body, "more_body": False},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    start = time.monotonic()
    await app(scope, receive, send)
    assert time.monotonic() - start < 5
    assert sent == []
    assert log.entries()[-1]["behaviour"] == "sleephdr"


def test_request_log_wait_for() -> None:
    log = RequestLog()
    assert not log.wait_for(lambda entries: len(entries) > 0, 0.01)
    assert log.wait_for(lambda entries: not entries, 0.01)
