"""The 2.x client over an injected transport: which routes it asks, with which bodies, and what
it makes of the answers (shapes as 2.1.2 sends them: tests/client/opencode2/)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from opencode_manager.client import (
    AsyncOpencode2Client,
    AsyncOpencodeClient,
    Endpoint,
    client_for,
    healthcheck,
)
from opencode_manager.client.hub import EventHub, Item
from opencode_manager.client.types import Event
from opencode_manager.errors import NotFoundError, SessionNotFound, UsageError
from opencode_manager.lines import Line
from opencode_manager.models import TaskRecord, TaskStatus
from opencode_manager.tasks.runner import Observer, TaskRunner

V2 = Endpoint("http://127.0.0.1:1", name="v2", line=Line.V2)
SID = "ses_dae3dbe03ffe1BQUi74CuurnaE"
FORM = {
    "id": "frm_1",
    "sessionID": SID,
    "title": "Questions",
    "metadata": {"kind": "question", "tool": {"messageID": "msg_a", "id": "call_1"}},
    "fields": [
        {
            "key": "q0",
            "title": "Scripted choice",
            "description": "Which?",
            "type": "string",
            "options": [{"value": "a", "label": "Option A"}, {"value": "b", "label": "Option B"}],
            "custom": True,
        }
    ],
}
PERMISSION = {
    "id": "per_1",
    "sessionID": SID,
    "action": "shell",
    "resources": ["echo hi"],
    "save": ["echo *"],
    "source": {"type": "tool", "messageID": "msg_a", "id": "call_1"},
}


def _entry(mid: str, kind: str = "user", **more: Any) -> dict[str, Any]:
    return {"id": mid, "time": {"created": 1}, "type": kind, **more}


class Server:
    """Plays a 2.1.2 server: answers by route, remembers every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.sessions = [{"id": f"ses_{n}", "title": f"s{n}", "time": {"created": n, "updated": n},
                          "location": {"directory": "/w/p"}} for n in range(5)]  # fmt: skip
        self.entries = [_entry(f"msg_{n}") for n in range(5)]
        self.inbox: list[Any] = []
        self.active: dict[str, Any] = {SID: {"type": "running"}}
        #: The entries a prompt parked in the inbox makes when it is sent again (None: kept).
        self.delivers: list[Any] | None = None
        self.frames: list[dict[str, Any]] = []
        self.streams = 0

    def seen(self, method: str, path: str) -> list[Any]:
        return [body for m, p, _, body in self.requests if (m, p) == (method, path)]

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        query = parse_qs(request.url.query.decode())
        body: Any = json.loads(request.content) if request.content else {}
        self.requests.append((request.method, path, query, body))
        route = (request.method, path)
        if route == ("GET", "/api/session"):
            return self._page(self.sessions, query, 2)
        if route == ("POST", "/api/session"):
            made = {"id": SID, "title": body["title"], "location": body.get("location")}
            return httpx.Response(200, json={"data": made})
        if route == ("GET", f"/api/session/{SID}/message"):
            return self._page(self.entries, query, 2)
        if route == ("GET", f"/api/session/{SID}/inbox"):
            return httpx.Response(200, json={"data": self.inbox})
        if path.startswith(f"/api/session/{SID}/message/"):
            mid = path.rsplit("/", 1)[1]
            found = [e for e in self.entries if e["id"] == mid]
            if found:
                return httpx.Response(200, json={"data": found[0]})
            return httpx.Response(404, json={"_tag": "MessageNotFoundError",
                                             "message": f"Message not found: {mid}"})  # fmt: skip
        if route == ("GET", "/api/session/ses_gone"):
            return httpx.Response(404, json={"_tag": "SessionNotFoundError",
                                             "message": "Session not found: ses_gone"})  # fmt: skip
        if route == ("GET", "/api/session/active"):
            return httpx.Response(200, json={"data": self.active})
        if route == ("GET", "/api/form"):
            return httpx.Response(200, json={"location": {"directory": "/w/p"}, "data": [FORM]})
        if route == ("GET", "/api/permission/request"):
            return httpx.Response(200, json={"data": [PERMISSION]})
        if route == ("POST", f"/api/session/{SID}/interrupt"):
            return httpx.Response(200, json={"interrupted": True})
        if route == ("POST", f"/api/session/{SID}/prompt"):
            parked = [i for i in self.inbox if i["id"] == body.get("id")]
            if parked and self.delivers is not None:  # this process runs what it is sent
                self.inbox.remove(parked[0])
                self.entries.extend(self.delivers)
            return httpx.Response(200, json={"data": {"id": body.get("id"), "type": "user"}})
        if route == ("GET", "/api/event"):
            self.streams += 1
            return self._stream()
        if request.method in ("POST", "DELETE"):
            return httpx.Response(204)
        return httpx.Response(
            200, text="<html>web app</html>", headers={"content-type": "text/html"}
        )

    @staticmethod
    def _page(items: list[Any], query: dict[str, list[str]], size: int) -> httpx.Response:
        """Pages of `size`, oldest first, the next page's cursor an offset (opaque to us)."""
        start = int(query["cursor"][0]) if "cursor" in query else 0
        page = items[start : start + size]
        nxt = str(start + size) if start + size < len(items) else None
        return httpx.Response(200, json={"data": page, "cursor": {"previous": None, "next": nxt}})

    def _stream(self) -> httpx.Response:
        frames = list(self.frames)

        async def body() -> AsyncIterator[bytes]:
            yield b": heartbeat\n\n"
            for frame in frames:
                yield f"data: {json.dumps(frame)}\n\n".encode()
            await asyncio.Event().wait()  # the server keeps it open

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


def run(test: Callable[[Server, AsyncOpencodeClient], Coroutine[Any, Any, None]]) -> Server:
    server = Server()

    async def main() -> None:
        async with client_for(V2, transport=httpx.MockTransport(server.handle)) as client:
            await test(server, client)

    asyncio.run(main())
    return server


def test_the_endpoint_line_chooses_the_client() -> None:
    assert type(client_for(V2)) is AsyncOpencode2Client
    assert type(client_for(Endpoint("http://127.0.0.1:1"))) is AsyncOpencodeClient
    assert (client_for(V2).line, client_for(V2).structured_output) == (Line.V2, False)


def test_sessions_and_messages_are_read_page_by_page() -> None:
    async def test(server: Server, client: AsyncOpencodeClient) -> None:
        sessions = await client.sessions("/w/p")
        assert [s.id for s in sessions] == [f"ses_{n}" for n in range(5)]
        assert {s.directory for s in sessions} == {"/w/p"}
        messages = await client.messages(SID)
        assert [m.id for m in messages] == [f"msg_{n}" for n in range(5)]

    server = run(test)
    queries = [q for m, p, q, _ in server.requests if p == "/api/session"]
    assert queries[0] == {"limit": ["200"], "directory": ["/w/p"]}
    assert [q.get("cursor") for q in queries] == [None, ["2"], ["4"]]
    assert "directory" not in queries[1]  # the cursor carries the filter
    pages = [q for m, p, q, _ in server.requests if p.endswith("/message")]
    assert pages[0]["order"] == ["asc"]
    assert all("order" not in q for q in pages[1:])  # 2.x refuses a cursor with an order


def test_a_prompt_is_found_delivered_or_waiting_in_the_inbox() -> None:
    async def test(server: Server, client: AsyncOpencodeClient) -> None:
        found = await client.message(SID, "msg_1")
        assert found is not None
        assert (found.id, found.role) == ("msg_1", "user")
        assert await client.message(SID, "msg_ocm1") is None
        server.inbox.append({"id": "msg_ocm1", "sessionID": SID, "type": "user",
                             "payload": {"text": "parked"}, "time": {"created": 5}})  # fmt: skip
        waiting = await client.message(SID, "msg_ocm1")
        assert waiting is not None
        assert waiting.id == "msg_ocm1"
        assert [p.text for p in waiting.parts] == ["parked"]

    run(test)


def test_only_a_prompt_in_the_inbox_is_parked() -> None:
    async def test(server: Server, client: AsyncOpencodeClient) -> None:
        assert not await client.parked(SID, "msg_1")  # delivered
        server.inbox.append({"id": "msg_ocm1", "sessionID": SID, "type": "user"})
        assert await client.parked(SID, "msg_ocm1")
        v1 = AsyncOpencodeClient(Endpoint("http://127.0.0.1:1"))
        assert not await v1.parked(SID, "msg_ocm1")  # 1.x has no inbox: asks nothing

    server = run(test)
    assert [p for _, p, _, _ in server.requests].count(f"/api/session/{SID}/inbox") == 2


def test_a_prompt_left_parked_by_a_restart_is_sent_again_with_its_id_and_followed() -> None:
    """2.1.2 (probed): a prompt in the inbox outlives kill -9 and a restart, and the new
    process leaves it there; sent again with its id it runs once. A runner following it (a
    batch after an outage, `ocm wait`) wakes it instead of waiting for ever."""
    captured = json.loads((Path(__file__).parent / "opencode2" / "text.json").read_text())
    admitted = captured["admissions"][0]["data"]
    record = TaskRecord(
        id="t-1", prompt=admitted["payload"]["text"], status=TaskStatus.RUNNING,
        created_at=time.time(), started_at=time.time(), directory="/w/p", session_id=SID,
        message_id=admitted["id"], prompted=True,
    )  # fmt: skip

    async def persist(record: TaskRecord) -> None:
        return None

    async def test(server: Server, client: AsyncOpencodeClient) -> None:
        server.entries, server.inbox, server.active = [], [admitted], {}
        server.delivers = captured["messages"]
        runner = TaskRunner(client=client, record=record, persist=persist, observer=Observer(),
                            poll_interval=0.02, send_grace=0.1)  # fmt: skip
        await asyncio.wait_for(runner.run(), 10)

    server = run(test)
    assert record.status is TaskStatus.COMPLETED, record.error
    assert record.text == "Scripted reply. You said: hello there TEXT"
    sent = server.seen("POST", f"/api/session/{SID}/prompt")
    assert [b["id"] for b in sent] == [admitted["id"]]  # once, with its own id


def test_a_missing_session_is_session_not_found() -> None:
    async def test(server: Server, client: AsyncOpencodeClient) -> None:
        with pytest.raises(SessionNotFound):
            await client.session("ses_gone")

    run(test)


def test_agent_and_model_are_the_sessions_and_the_prompt_carries_our_id() -> None:
    async def test(server: Server, client: AsyncOpencodeClient) -> None:
        made = await client.create_session(
            title="ocm: hi", directory="/w/p", agent="plan", model="scripted/scripted-model"
        )
        await client.prompt_async(SID, "hi", agent="plan", model="scripted/scripted-model",
                                  message_id="msg_ocm1")  # fmt: skip
        assert server.seen("POST", f"/api/session/{SID}/agent") == []  # chosen at creation
        await client.prompt_async(SID, "again", agent="build", message_id="msg_ocm2")
        assert made.directory == "/w/p"

    server = run(test)
    [created] = server.seen("POST", "/api/session")
    assert created == {"title": "ocm: hi", "location": {"directory": "/w/p"}, "agent": "plan",
                       "model": {"id": "scripted-model", "providerID": "scripted"}}  # fmt: skip
    assert server.seen("POST", f"/api/session/{SID}/prompt") == [
        {"text": "hi", "id": "msg_ocm1"}, {"text": "again", "id": "msg_ocm2"}
    ]  # fmt: skip
    assert server.seen("POST", f"/api/session/{SID}/agent") == [{"agent": "build"}]


def test_a_schema_is_refused_before_anything_is_sent() -> None:
    async def test(server: Server, client: AsyncOpencodeClient) -> None:
        with pytest.raises(UsageError, match="no structured output"):
            await client.prompt_async(SID, "x", schema={"type": "object"}, message_id="msg_x")

    assert run(test).requests == []


def test_busy_is_what_runs_and_abort_interrupts() -> None:
    async def test(server: Server, client: AsyncOpencodeClient) -> None:
        busy = await client.session_status("/anywhere")
        assert busy[SID]["type"] == "busy"
        await client.abort(SID)
        assert await client.lsp_status() is None  # no LSP on 2.x
        await client.dispose()  # nothing to do

    server = run(test)
    assert [(m, p) for m, p, _, _ in server.requests] == [
        ("GET", "/api/session/active"), ("POST", f"/api/session/{SID}/interrupt")
    ]  # fmt: skip


def test_asks_are_answered_per_session_and_questions_by_field() -> None:
    async def test(server: Server, client: AsyncOpencodeClient) -> None:
        [permission] = await client.permissions("/w/p")
        assert (permission["permission"], permission["patterns"]) == ("shell", ["echo hi"])
        [question] = await client.questions("/w/p")
        assert [o["label"] for o in question["questions"][0]["options"]] == ["Option A", "Option B"]
        await client.reply_permission("per_1", "once", None, "/w/p", session_id=SID)
        await client.reply_permission("per_1", "reject", "no", "/w/p")  # its session looked up
        await client.reply_question("frm_1", [["Option B"]], "/w/p", session_id=SID)
        await client.reject_question("frm_1", "/w/p", session_id=SID)
        with pytest.raises(NotFoundError):
            await client.reply_question("frm_gone", [["x"]], "/w/p")

    server = run(test)
    assert server.seen("POST", f"/api/session/{SID}/permission/per_1/reply") == [
        {"decision": "once"}, {"decision": "reject", "message": "no"}
    ]  # fmt: skip
    assert server.seen("POST", f"/api/session/{SID}/form/frm_1/reply") == [{"answer": {"q0": "b"}}]
    assert server.seen("DELETE", f"/api/session/{SID}/form/frm_1") == [{}]
    locations = [q for m, p, q, _ in server.requests if p == "/api/form"]
    assert locations[0] == {"location[directory]": ["/w/p"]}


def test_events_come_translated_from_one_stream_per_server() -> None:
    frames = [
        {"type": "server.connected", "data": {}},
        {"type": "session.execution.started", "data": {"sessionID": SID}},
        {"type": "session.execution.succeeded", "data": {"sessionID": SID}},
    ]

    async def test(server: Server, client: AsyncOpencodeClient) -> None:
        server.frames = frames
        async with EventHub() as hub:
            queues: list[asyncio.Queue[Item]] = []
            subs = []
            for directory in ("/w/p", "/w/q"):  # two directories, one server: one stream
                queue: asyncio.Queue[Item] = asyncio.Queue()
                connected = asyncio.Event()
                subs.append(asyncio.create_task(hub.feed(client, directory, queue, connected)))
                await asyncio.wait_for(connected.wait(), 5)
                queues.append(queue)
            got: list[str] = []
            while len(got) < 4:
                item = await asyncio.wait_for(queues[0].get(), 5)
                assert isinstance(item, Event)
                got.append(item.type)
            for sub in subs:
                sub.cancel()
            await asyncio.gather(*subs, return_exceptions=True)
        assert got == ["server.connected", "session.status", "session.status", "session.idle"]
        assert server.streams == 1

    run(test)


def test_the_keepers_busy_check_asks_2x_what_runs() -> None:
    async def main() -> dict[str, Any]:
        asked: list[bytes] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            asked.append(await reader.readline())
            while (await reader.readline()).strip():
                pass
            body = json.dumps({"data": {SID: {"type": "running"}}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            endpoint = Endpoint(f"http://127.0.0.1:{port}", line=Line.V2)
            busy = await healthcheck.busy_sessions(endpoint, "/w/p", timeout=5)
        assert asked == [b"GET /api/session/active HTTP/1.1\r\n"]
        return busy

    assert asyncio.run(main()) == {SID: {"type": "running"}}
