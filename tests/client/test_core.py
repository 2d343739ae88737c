"""Unit tests: the client core through httpx.MockTransport (no server)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from opencode_manager.client import AsyncOpencodeClient, Endpoint, OpencodeClient
from opencode_manager.client import operations as ops
from opencode_manager.errors import ServerError, ServerRefused, ServerUnreachable, SessionNotFound

ENDPOINT = Endpoint(url="http://127.0.0.1:4096/", password="pw", name="oc-1")


def _client(handler: object) -> OpencodeClient:
    return OpencodeClient(ENDPOINT, transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_requests_carry_auth_directory_and_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "ses_1", "title": "t", "directory": "/p"})

    with _client(handler) as client:
        session = client.create_session("t", "/p w")
    assert session.id == "ses_1"
    request = seen[0]
    assert str(request.url) == "http://127.0.0.1:4096/session"
    assert request.headers["authorization"] == "Basic b3BlbmNvZGU6cHc="  # opencode:pw
    assert request.headers["x-opencode-directory"] == "%2Fp%20w"
    assert json.loads(request.content) == {"title": "t"}


def test_html_answers_are_errors_not_data() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, text="<html>web ui</html>", headers={"content-type": "text/html"}
        )

    with _client(handler) as client, pytest.raises(ServerError, match="not an API route"):
        client.call(ops.raw("GET", "/nope"))


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (401, None, "401 unauthorized"),
        (
            404,
            {"name": "NotFoundError", "data": {"message": "Route not found"}},
            "NotFoundError: Route not found",
        ),
        (
            500,
            {"name": "UnknownError", "data": {"message": "Unexpected", "ref": "err_1"}},
            "HTTP 500",
        ),
    ],
)
def test_errors_carry_status_and_detail(status: int, body: object, message: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if body else httpx.Response(status)

    with _client(handler) as client, pytest.raises(ServerRefused, match=message) as info:
        client.health()
    assert info.value.status_code == status


@pytest.mark.parametrize("status", [404, 500])
def test_a_missing_session_is_session_not_found(status: int) -> None:
    body = {"name": "NotFoundError", "data": {"message": "Session not found: ses_x"}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    with _client(handler) as client, pytest.raises(SessionNotFound) as info:
        client.messages("ses_x")
    assert info.value.session_id == "ses_x"
    assert info.value.exit_code == 3


def test_no_answer_is_server_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with _client(handler) as client, pytest.raises(ServerUnreachable) as info:
        client.health()
    assert info.value.status_code is None
    assert isinstance(info.value, ServerError)


def test_prompt_async_sends_model_and_agent() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(204)

    with _client(handler) as client:
        client.prompt_async("ses_1", "hi", agent="plan", model="prov/model-x")
    assert json.loads(seen[0]) == {
        "parts": [{"type": "text", "text": "hi"}],
        "agent": "plan",
        "model": {"providerID": "prov", "modelID": "model-x"},
    }


def test_unreachable_server() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with _client(handler) as client, pytest.raises(ServerError, match="is unreachable"):
        client.health()


def test_async_client_shares_the_core() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"healthy": True, "version": "1.18.33"})

    async def go() -> dict[str, object]:
        async with AsyncOpencodeClient(ENDPOINT, transport=httpx.MockTransport(handler)) as client:
            return await client.health()

    assert asyncio.run(go()) == {"healthy": True, "version": "1.18.33"}
