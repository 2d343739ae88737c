"""Unit tests: how long a call waits, which calls are asked again, and what a missed deadline
says (issue 23: a fixed 10 s read timeout, "ReadTimeout" as the whole explanation)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from opencode_manager.client import AsyncOpencodeClient, Endpoint, OpencodeClient, core
from opencode_manager.errors import (
    ServerTimeout,
    ServerUnreachable,
    SessionNotFound,
    StateError,
)
from opencode_manager.settings import HTTP_TIMEOUT, Settings

ENDPOINT = Endpoint(url="http://127.0.0.1:4096/", password="pw", name="oc-1", timeout=30.0)
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "RETRY_PAUSE", 0.0)


def _client(handler: Handler, **kwargs: object) -> OpencodeClient:
    return OpencodeClient(ENDPOINT, transport=httpx.MockTransport(handler), **kwargs)  # type: ignore[arg-type]


def _stalling(times: int, then: httpx.Response) -> tuple[Handler, list[httpx.Request]]:
    """A server that gives no answer `times` times, then answers."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= times:
            raise httpx.ReadTimeout("timed out", request=request)
        return then

    return handler, seen


def test_the_timeout_is_a_setting_with_a_default_and_checked() -> None:
    assert Settings.load(home="/h", environ={}).http_timeout == HTTP_TIMEOUT == 30.0
    assert Settings.load(home="/h", environ={"OCM_HTTP_TIMEOUT": "4.5"}).http_timeout == 4.5
    explicit = Settings.load(home="/h", environ={"OCM_HTTP_TIMEOUT": "4"}, http_timeout=7.0)
    assert explicit.http_timeout == 7.0  # an argument (a flag) wins over the environment
    for bad in ("0", "soon", "-1"):
        with pytest.raises(StateError, match="OCM_HTTP_TIMEOUT"):
            Settings.load(home="/h", environ={"OCM_HTTP_TIMEOUT": bad})


def test_calls_wait_the_settings_time_and_a_session_twice_that() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "ses_1"} if request.method == "POST" else {})

    with _client(handler) as client:
        client.session_status()
        client.create_session("t")
    reads = [r.extensions["timeout"]["read"] for r in seen]
    # Creating a session may boot a project directory on the server: twice the setting.
    assert reads == [30.0, 60.0]


def test_a_safe_call_is_asked_again_before_it_fails() -> None:
    handler, seen = _stalling(2, httpx.Response(200, json={"ses_1": {"type": "busy"}}))
    with _client(handler) as client:
        assert client.session_status() == {"ses_1": {"type": "busy"}}
    assert len(seen) == 3


def test_a_session_is_created_again_when_no_answer_came() -> None:
    """A duplicate is only an empty session; failing the task would lose it."""
    handler, seen = _stalling(1, httpx.Response(200, json={"id": "ses_2"}))
    with _client(handler) as client:
        assert client.create_session("t").id == "ses_2"
    assert [r.method for r in seen] == ["POST", "POST"]


def test_a_prompt_is_never_sent_again_by_the_client() -> None:
    handler, seen = _stalling(5, httpx.Response(204))
    with _client(handler) as client, pytest.raises(ServerTimeout) as caught:
        client.prompt_async("ses_1", "hello", message_id="msg_1")
    assert len(seen) == 1
    assert json.loads(seen[0].content)["messageID"] == "msg_1"
    message = str(caught.value)
    assert message == (
        "oc-1 did not answer POST /session/ses_1/prompt_async within 30 s (the machine or "
        "the server is overloaded, or the server is stopped); raise OCM_HTTP_TIMEOUT"
    )
    assert "\n" not in message
    assert "ReadTimeout" not in message
    assert caught.value.seconds == 30.0


def test_a_safe_call_that_never_gets_an_answer_says_what_was_slow() -> None:
    handler, seen = _stalling(99, httpx.Response(200))
    with _client(handler) as client, pytest.raises(ServerTimeout) as caught:
        client.create_session("t")
    assert len(seen) == core.SAFE_ATTEMPTS
    assert str(caught.value).startswith("oc-1 did not answer POST /session within 60 s")
    assert str(caught.value).endswith("raise OCM_HTTP_TIMEOUT")


def test_a_probe_keeps_its_own_deadline_and_is_not_retried() -> None:
    handler, seen = _stalling(99, httpx.Response(200))
    with _client(handler, timeout=3.0) as client, pytest.raises(ServerTimeout) as caught:
        client.session_status()
    assert len(seen) == 1
    assert seen[0].extensions["timeout"]["read"] == 3.0
    assert "within 3 s" in str(caught.value)
    assert "OCM_HTTP_TIMEOUT" not in str(caught.value)  # the setting did not decide it
    with _client(handler) as client, pytest.raises(ServerTimeout):
        client.health(timeout=1.0)
    assert len(seen) == 2


def test_a_refused_connection_is_unreachable_not_a_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with _client(handler) as client, pytest.raises(ServerUnreachable) as caught:
        client.prompt_async("ses_1", "hello")
    assert not isinstance(caught.value, ServerTimeout)
    assert str(caught.value) == (
        "oc-1 is unreachable (POST /session/ses_1/prompt_async: [Errno 111] Connection refused)"
    )


def test_a_shared_pool_still_gets_each_clients_deadline() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        OpencodeClient(ENDPOINT, http=http).session_status()
        OpencodeClient(ENDPOINT, http=http, timeout=3.0).session_status()
    assert [r.extensions["timeout"]["read"] for r in seen] == [30.0, 3.0]


@pytest.mark.anyio
async def test_a_message_is_looked_up_by_its_id() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/session/ses_1/message/msg_here":
            info = {"id": "msg_here", "role": "user", "sessionID": "ses_1"}
            return httpx.Response(200, json={"info": info, "parts": []})
        if path.startswith("/session/ses_1/"):
            error = {"message": f"Message not found: {path.rsplit('/', 1)[1]}"}
            return httpx.Response(404, json={"name": "NotFoundError", "data": error})
        error = {"message": "Session not found: ses_gone"}
        return httpx.Response(404, json={"name": "NotFoundError", "data": error})

    transport = httpx.MockTransport(handler)
    async with AsyncOpencodeClient(ENDPOINT, transport=transport) as client:
        found = await client.message("ses_1", "msg_here")
        assert found is not None
        assert (found.id, found.session_id) == ("msg_here", "ses_1")
        assert await client.message("ses_1", "msg_absent") is None
        with pytest.raises(SessionNotFound):
            await client.message("ses_gone", "msg_x")


def test_the_endpoint_of_an_instance_carries_the_setting(home_fleet: object) -> None:
    from opencode_manager.instances.fleet import Fleet
    from opencode_manager.models import InstanceRecord, InstanceSpec, State

    assert isinstance(home_fleet, Fleet)
    record = InstanceRecord(
        name="oc-1", spec=InstanceSpec(name="oc-1", dir="/"), state=State.RUNNING,
        created_at=0.0, updated_at=0.0, url="http://127.0.0.1:1",
    )  # fmt: skip
    endpoint = home_fleet.endpoint(record)
    assert endpoint is not None
    assert endpoint.timeout == home_fleet.settings.http_timeout
