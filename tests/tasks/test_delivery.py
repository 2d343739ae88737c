"""Unit tests: a prompt whose answer was lost is reconciled by its message id, never simply
sent again (issue 23, point 2). The server is a small fake over httpx.MockTransport that
behaves as OpenCode 1.18.33 was seen to (client/identifiers.py)."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from opencode_manager.client import AsyncOpencodeClient, Endpoint, core
from opencode_manager.errors import ServerUnreachable, TurnLost
from opencode_manager.models import ProcessIdentity, TaskRecord, TaskStatus
from opencode_manager.tasks import delivery
from opencode_manager.tasks.custody import Custody
from opencode_manager.tasks.runner import Observer, TaskRunner
from opencode_manager.tasks.tracker import TurnState

pytestmark = pytest.mark.anyio

ENDPOINT = Endpoint(url="http://127.0.0.1:4096", password="pw", name="oc-1", timeout=0.5)
SESSION = "ses_1"
PROMPT = "BASH: echo once"


@dataclass
class FakeServer:
    """Sessions with messages; `take_silently` prompts are stored but their answer is
    lost; `drop` prompts are lost on the way; `silent` calls get no answer."""

    take_silently: int = 0
    drop: int = 0
    silent: int = 0  # the next N lookups (GETs) get no answer
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)  # every POST's body

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == f"/session/{SESSION}/prompt_async":
            body = json.loads(request.content)
            self.prompts.append(body)
            if self.drop:
                self.drop -= 1
                raise httpx.ReadTimeout("timed out", request=request)
            self._take(body)
            if self.take_silently:
                self.take_silently -= 1
                raise httpx.ReadTimeout("timed out", request=request)
            return httpx.Response(204)
        if request.method == "GET" and self.silent:
            self.silent -= 1
            raise httpx.ReadTimeout("timed out", request=request)
        if path.startswith(f"/session/{SESSION}/message/"):
            wanted = path.rsplit("/", 1)[1]
            for message in self.messages:
                if message["info"]["id"] == wanted:
                    return httpx.Response(200, json=message)
            error = {"message": f"Message not found: {wanted}"}
            return httpx.Response(404, json={"name": "NotFoundError", "data": error})
        if path == f"/session/{SESSION}/message":
            limit = int(request.url.params.get("limit") or 0)
            return httpx.Response(200, json=self.messages[-limit:] if limit else self.messages)
        if path == "/session/status":
            return httpx.Response(200, json={})
        raise AssertionError(f"unexpected {request.method} {path}")

    def _take(self, body: dict[str, Any]) -> None:
        """As 1.18.33: a known message id gets the text part again, no new message."""
        message_id = body.get("messageID") or f"msg_server{len(self.messages)}"
        parts = [dict(p) for p in body["parts"]]
        for message in self.messages:
            if message["info"]["id"] == message_id:
                message["parts"] += parts
                return
        info = {"id": message_id, "role": "user", "sessionID": SESSION,
                "time": {"created": time.time() * 1000}}  # fmt: skip
        self.messages.append({"info": info, "parts": parts})


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "RETRY_PAUSE", 0.0)
    monkeypatch.setattr(delivery, "LOOK_PAUSE", 0.01)


def _record(**fields: Any) -> TaskRecord:
    values: dict[str, Any] = {
        "id": "t-1", "prompt": PROMPT, "status": TaskStatus.RUNNING, "created_at": 0.0,
        "session_id": SESSION, "started_at": time.time(),
    }  # fmt: skip
    values.update(fields)
    return TaskRecord(**values)


def _runner(server: FakeServer, record: TaskRecord, saved: list[TaskRecord]) -> TaskRunner:
    async def persist(record: TaskRecord) -> None:
        saved.append(copy.deepcopy(record))

    client = AsyncOpencodeClient(ENDPOINT, transport=httpx.MockTransport(server.handle))
    return TaskRunner(
        client=client, record=record, persist=persist, observer=Observer(), send_grace=0.2
    )


async def test_a_prompt_whose_answer_was_lost_but_which_arrived_is_not_sent_again() -> None:
    server = FakeServer(take_silently=1)
    saved: list[TaskRecord] = []
    record = _record()
    await _runner(server, record, saved).send()
    assert len(server.prompts) == 1
    assert record.prompted is True
    assert record.sending is False
    # The id was chosen, and recorded with "sending", before the prompt went out.
    before = saved[0]
    assert before.sending is True
    assert before.prompted is False
    assert before.message_id is not None
    assert before.message_id.startswith("msg_")
    assert server.prompts[0]["messageID"] == before.message_id == record.message_id
    assert saved[-1].prompted is True


async def test_a_prompt_that_is_provably_absent_is_sent_again_with_the_same_id() -> None:
    server = FakeServer(drop=1)
    record = _record()
    await _runner(server, record, []).send()
    assert len(server.prompts) == 2
    assert server.prompts[0]["messageID"] == server.prompts[1]["messageID"] == record.message_id
    assert record.prompted is True
    assert [len(m["parts"]) for m in server.messages] == [1]


async def test_while_the_server_does_not_answer_it_is_waited_for_not_sent_to() -> None:
    server = FakeServer(take_silently=1, silent=4)  # the lookups time out, then it answers
    record = _record()
    await _runner(server, record, []).send()
    assert len(server.prompts) == 1
    assert record.prompted is True


async def test_a_server_that_never_answers_again_fails_the_send_and_says_so() -> None:
    server = FakeServer(take_silently=1, silent=10_000)
    record = _record()
    client = AsyncOpencodeClient(ENDPOINT, transport=httpx.MockTransport(server.handle))
    record.message_id = "msg_000000000001abcdefghijklmn"
    with pytest.raises(ServerUnreachable, match="went away while the prompt was being sent"):
        await delivery.deliver(client, record, patience=0.3, grace=0.2)
    assert len(server.prompts) == 1


async def test_a_task_left_sending_is_looked_up_before_anything_is_sent() -> None:
    server = FakeServer()
    server._take({"messageID": "msg_000000000001abcdefghijklmn",
                  "parts": [{"type": "text", "text": PROMPT}]})  # fmt: skip
    record = _record(sending=True, message_id="msg_000000000001abcdefghijklmn")
    await _runner(server, record, []).send()
    assert server.prompts == []
    assert record.prompted is True


async def test_an_older_record_without_an_id_is_looked_up_by_its_text() -> None:
    server = FakeServer()
    server._take({"parts": [{"type": "text", "text": PROMPT}]})  # sent by an older ocm
    record = _record(sending=True)
    await _runner(server, record, []).send()
    assert server.prompts == []
    assert record.prompted is True
    assert record.message_id == server.messages[0]["info"]["id"]  # the server's own


async def test_a_continued_session_gets_an_id_after_its_newest_message() -> None:
    server = FakeServer()
    ahead = "msg_ffffffffff01abcdefghijklmn"  # a server clock far ahead of ours
    server._take({"messageID": ahead, "parts": [{"type": "text", "text": "earlier"}]})
    record = _record()
    await _runner(server, record, []).send()
    assert record.message_id is not None
    assert record.message_id > ahead


async def test_a_turn_is_found_by_its_id_when_a_crash_lost_its_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server crashed mid-turn and came back: the user message is there without its
    text. Found by its id, the turn is reported lost (its server process is another one
    now), instead of being waited for until the task's deadline says "timed out"."""
    server = FakeServer()
    server._take({"messageID": "msg_000000000001abcdefghijklmn", "parts": []})
    answer = {"id": "msg_000000000002abcdefghijklmn", "role": "assistant", "sessionID": SESSION,
              "parentID": "msg_000000000001abcdefghijklmn", "time": {"created": 1.0}}  # fmt: skip
    server.messages.append({"info": answer, "parts": []})  # unfinished: no `finish`
    record = _record(prompted=True, message_id="msg_000000000001abcdefghijklmn")
    task = _runner(server, record, [])
    old, new = ProcessIdentity(1000, 1.0), ProcessIdentity(1001, 2.0)
    task.custody = Custody(lambda: new, alive=lambda identity: identity == new, holder=old)
    state = TurnState(session_id=SESSION)
    with pytest.raises(TurnLost, match="went away during the turn"):
        await task.looks_finished(state, 0.0)
    assert state.user_message_id == record.message_id
