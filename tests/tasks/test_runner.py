"""The task runner in-process: a fake OpenCode 1.x (`opencode_manager.testing.opencode`)
over `httpx.MockTransport`, no server, no model. Each test plays one turn's events as
1.18.33 makes them and checks what the runner records and answers."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from opencode_manager.client import Endpoint, core
from opencode_manager.client import operations as ops
from opencode_manager.client.pool import HttpPool
from opencode_manager.client.shells import AsyncOpencodeClient
from opencode_manager.errors import ServerUnreachable, TurnLost
from opencode_manager.models import AskPolicy, ProcessIdentity, TaskRecord, TaskStatus
from opencode_manager.tasks import delivery, runner
from opencode_manager.tasks.custody import Custody
from opencode_manager.tasks.runner import Observer, TaskRunner
from opencode_manager.testing.opencode import (
    Child,
    Fail,
    FakeOpencode,
    Hang,
    Pause,
    Permission,
    Question,
    Refuse,
    Reply,
    Retry,
    Step,
    Tool,
    transport,
)

from helpers import patient

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

URL = "http://127.0.0.1:4101"
ENDPOINT = Endpoint(url=URL, password="pw", name="oc-1", timeout=1.0)


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pauses meant for real servers, made short (each test says which it relies on)."""
    monkeypatch.setattr(core, "RETRY_PAUSE", 0.0)
    monkeypatch.setattr(delivery, "LOOK_PAUSE", 0.01)


class Scripted:
    """The steps of each prompt's turn, by prompt text (anything else: one reply)."""

    def __init__(self) -> None:
        self.turns: dict[str, Sequence[Step]] = {}

    def __call__(self, text: str) -> Sequence[Step]:
        return self.turns.get(text, [Reply(f"You said: {text}")])


@pytest.fixture
def script() -> Scripted:
    return Scripted()


@pytest.fixture
async def server(script: Scripted) -> AsyncIterator[FakeOpencode]:
    fake = FakeOpencode(URL, password="pw", script=script)
    yield fake
    await fake.aclose()


@pytest.fixture
async def client(server: FakeOpencode) -> AsyncIterator[AsyncOpencodeClient]:
    pool = HttpPool(transport(server))
    yield pool.client(ENDPOINT)
    await pool.aclose()


class Saved(list[TaskRecord]):
    """What the runner persisted, each write a copy."""

    async def __call__(self, record: TaskRecord) -> None:
        self.append(copy.deepcopy(record))


def _record(prompt: str, server: FakeOpencode, **fields: Any) -> TaskRecord:
    values: dict[str, Any] = {"id": "t-1", "prompt": prompt, "status": TaskStatus.PENDING,
                              "created_at": time.time(), "directory": server.directory}  # fmt: skip
    values.update(fields)
    return TaskRecord(**values)


def _runner(
    client: AsyncOpencodeClient, record: TaskRecord, saved: Saved | None = None, **kwargs: Any
) -> TaskRunner:
    return TaskRunner(client=client, record=record, persist=saved if saved is not None else
                      Saved(), observer=kwargs.pop("observer", Observer()), **kwargs)  # fmt: skip


async def _timed(runner: TaskRunner) -> tuple[TaskRecord, float]:
    began = time.monotonic()
    record = await runner.run()
    return record, time.monotonic() - began


# -- idle detection ---------------------------------------------------------------------------
async def test_a_turn_is_followed_to_its_idle_and_read_back(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["go"] = [Tool(output="done\n"), Reply("all done here")]
    shown: list[str] = []
    saved = Saved()
    record = _record("go", server)
    task = _runner(client, record, saved, observer=Observer(on_text=shown.append))
    done, took = await _timed(task)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.text == "all done here"
    assert "".join(shown) == "all done here"  # the live deltas, as they came
    assert [c["tool"] for c in done.tool_calls] == ["bash"]
    assert done.steps == 2
    assert done.tokens["input"] == 10
    # The session was recorded before the prompt went out, the prompt once, by its id.
    assert saved[0].session_id is not None
    assert saved[0].prompted is False
    assert [t.prompt for t in server.turns] == ["go"]
    assert server.turns[0].message_id == done.message_id
    assert took < 1.0  # the events ended it, not the 2 s poll


async def test_the_double_idle_before_the_error_message_waits_for_that_message(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    """§6.5: an error sends idle, then the message carrying the error, then idle again. The
    first idle ends the turn; the record is made from the message stored after it."""
    script.turns["fail"] = [Fail("fake error 401", late=0.3, tokens={"input": 7})]
    done, took = await _timed(_runner(client, _record("fail", server)))
    assert done.status is TaskStatus.FAILED
    assert done.error is not None
    assert done.error["name"] == "APIError"
    assert done.error["data"]["message"] == "fake error 401"
    assert done.tokens["input"] == 7  # only the late message.updated carried them
    assert took < 1.0


async def test_a_subagents_idle_does_not_end_the_turn(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["delegate"] = [Child("child done"), Pause(0.1), Reply("parent done")]
    done, _ = await _timed(_runner(client, _record("delegate", server)))
    assert done.status is TaskStatus.COMPLETED
    assert done.text == "parent done"


async def test_an_error_that_never_goes_idle_ends_after_the_grace(
    server: FakeOpencode,
    client: AsyncOpencodeClient,
    script: Scripted,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unknown agent gets two session.error and nothing else (§5.8): no idle ever."""
    monkeypatch.setattr(runner, "ERROR_GRACE", 0.2)
    monkeypatch.setattr(runner, "TAIL_GRACE", 0.2)  # no message is stored to wait for
    script.turns["who"] = [Refuse('Agent not found: "nosuchagent"')]
    errors: list[dict[str, Any]] = []
    task = _runner(client, _record("who", server), observer=Observer(on_error=errors.append))
    done, took = await _timed(task)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None
    assert "Agent not found" in done.error["data"]["message"]
    assert errors  # shown live
    assert took < 1.0


# -- provider retries ---------------------------------------------------------------------------
async def test_provider_retries_within_the_budget_are_waited_for(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["flaky"] = [Retry(2), Reply("got there")]
    retries: list[int] = []
    record = _record("flaky", server, max_retries=3)
    task = _runner(client, record, observer=Observer(on_retry=lambda n, _: retries.append(n)))
    done, _ = await _timed(task)
    assert done.status is TaskStatus.COMPLETED
    assert done.text == "got there"
    assert retries == [1, 2]
    assert ("POST", f"/session/{done.session_id}/abort") not in server.requests


async def test_provider_retries_past_the_budget_abort_the_turn(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["down"] = [Retry(3, "fake error 500"), Hang()]
    done, took = await _timed(_runner(client, _record("down", server, max_retries=2)))
    assert done.status is TaskStatus.FAILED
    assert done.error is not None
    assert done.error["name"] == "RetriesExhausted"
    assert "gave up after 2 retries: fake error 500" in done.error["message"]
    assert ("POST", f"/session/{done.session_id}/abort") in server.requests
    assert server.busy() == {}  # the turn was stopped on the server
    assert took < 1.0


# -- asks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "answer"), [(AskPolicy.REJECT, "reject"), (AskPolicy.APPROVE, "once")]
)
async def test_a_permission_is_answered_by_the_policy(
    server: FakeOpencode,
    client: AsyncOpencodeClient,
    script: Scripted,
    policy: AskPolicy,
    answer: str,
) -> None:
    script.turns["peek"] = [Permission("external_directory", ["/etc/*"]), Reply("after")]
    seen: list[tuple[str, str]] = []
    observer = Observer(on_ask=lambda ask, how: seen.append((ask.kind, how)))
    task = _runner(client, _record("peek", server, on_ask=policy.value), observer=observer)
    done, _ = await _timed(task)
    assert done.status is TaskStatus.COMPLETED
    assert [(a["kind"], a["answer"]) for a in done.asks] == [("permission", answer)]
    assert done.asks[0]["request"]["patterns"] == ["/etc/*"]
    assert seen == [("permission", answer)]
    status = done.tool_calls[0]["status"]
    assert status == ("error" if policy is AskPolicy.REJECT else "completed")


@pytest.mark.parametrize(
    ("policy", "answer", "event"),
    [(AskPolicy.REJECT, "rejected", "question.rejected"),
     (AskPolicy.APPROVE, "first option", "question.replied")],
)  # fmt: skip
async def test_a_question_is_answered_by_the_policy(
    server: FakeOpencode,
    client: AsyncOpencodeClient,
    script: Scripted,
    policy: AskPolicy,
    answer: str,
    event: str,
) -> None:
    script.turns["ask"] = [Question("Pick a colour?", ["Red", "Blue"]), Reply("ok")]
    done, _ = await _timed(_runner(client, _record("ask", server, on_ask=policy.value)))
    assert done.status is TaskStatus.COMPLETED
    assert [a["answer"] for a in done.asks] == [answer]
    if policy is AskPolicy.APPROVE:
        assert done.tool_calls[0]["output"] == '[["Red"]]'  # the first option, chosen


async def test_an_ask_left_pending_is_recorded_then_its_answer(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    """LEAVE: nobody answers for the runner; somebody else does (an MCP client, a person),
    and the runner records how from the `permission.replied` event."""
    script.turns["wait"] = [Permission(), Reply("thanks")]
    saved = Saved()
    record = _record("wait", server, on_ask=AskPolicy.LEAVE.value)
    following = asyncio.create_task(_runner(client, record, saved).run())
    ask = await server.wait_for_ask()
    await _until(lambda: any(a.get("answer") == "pending" for s in saved for a in s.asks))
    await client.call(ops.reply_permission(ask["id"], "always", directory=server.directory))
    done = await asyncio.wait_for(following, 5)
    assert done.status is TaskStatus.COMPLETED
    assert [a["answer"] for a in done.asks] == ["always"]


async def test_asks_made_before_the_runner_followed_are_answered(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    """A detached task (`ocm run --async`) asks while nobody follows; `ocm wait` follows it
    later and must answer what its event stream never showed."""
    script.turns["later"] = [Permission(), Reply("went on")]
    record = _record("later", server)  # reject
    sender = _runner(client, record)
    await sender.begin()
    await sender.send()
    await server.wait_for_ask()
    done, _ = await _timed(_runner(client, record))
    assert done.status is TaskStatus.COMPLETED
    assert [a["answer"] for a in done.asks] == ["reject"]
    assert len(server.turns) == 1


async def test_an_ask_left_pending_and_answered_while_nobody_followed_is_recorded(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["leave"] = [Permission(), Pause(0.2), Reply("went on")]
    record = _record("leave", server, on_ask=AskPolicy.LEAVE.value)
    sender = _runner(client, record)
    await sender.begin()
    await sender.send()
    ask = await server.wait_for_ask()
    record.asks.append({"kind": "permission", "id": ask["id"], "session_id": record.session_id,
                        "answer": "pending", "request": {}})  # fmt: skip
    await client.call(ops.reply_permission(ask["id"], "once", directory=server.directory))
    done, _ = await _timed(_runner(client, record))
    assert [a["answer"] for a in done.asks] == ["answered"]


# -- the stream ---------------------------------------------------------------------------------
async def test_a_turn_that_ends_while_the_stream_is_down_is_found_over_rest(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    """OpenCode has no replay: the end of a turn that came while the stream was lost is
    read from /session/status and the messages at once, not at the next 2 s poll."""
    script.turns["gap"] = [Pause(0.2), Reply("finished in the dark")]
    refused = asyncio.Event()

    async def no_stream(request: httpx.Request) -> httpx.Response | None:
        if refused.is_set() and request.url.path == "/event":
            raise httpx.ConnectError("refused", request=request)
        return None

    server.before = no_stream
    following = asyncio.create_task(_timed(_runner(client, _record("gap", server))))
    await _until(lambda: bool(server.turns) and server.streams > 0)
    refused.set()
    server.drop_streams()  # lost mid-turn, and not back before the turn ends
    done, took = await asyncio.wait_for(following, 5)
    assert done.status is TaskStatus.COMPLETED
    assert done.text == "finished in the dark"
    assert took < 1.5


async def test_a_stream_back_after_the_turn_ended_resyncs_over_rest(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["blink"] = [Pause(0.15), Reply("done meanwhile")]
    dropped = asyncio.Event()

    async def late_stream(request: httpx.Request) -> httpx.Response | None:
        if dropped.is_set() and request.url.path == "/event":
            await server.idle()  # the stream comes back once the turn is over
        return None

    server.before = late_stream
    following = asyncio.create_task(_timed(_runner(client, _record("blink", server))))
    await _until(lambda: bool(server.turns) and server.streams > 0)
    dropped.set()
    server.drop_streams()
    done, took = await asyncio.wait_for(following, 5)
    assert done.status is TaskStatus.COMPLETED
    assert done.text == "done meanwhile"
    assert took < 1.5


# -- resume, timeout, cancel, a server gone ----------------------------------------------------
async def test_a_resumed_task_whose_turn_already_finished_is_recorded_at_once(
    server: FakeOpencode, client: AsyncOpencodeClient
) -> None:
    """A runner died after sending (or `ocm run --async`); the turn ended meanwhile. The
    next runner finds it ended without sending anything, and without waiting for a poll."""
    record = _record("quick one", server)
    sender = _runner(client, record)
    await sender.begin()
    await sender.send()
    await server.idle()
    done, took = await _timed(_runner(client, record))
    assert done.status is TaskStatus.COMPLETED
    assert done.text == "You said: quick one"
    assert len(server.prompts) == 1
    assert took < 1.0


async def test_a_resumed_task_left_sending_is_looked_up_not_sent_again(
    server: FakeOpencode, client: AsyncOpencodeClient
) -> None:
    record = _record("sent once", server)
    sender = _runner(client, record)
    await sender.begin()
    await sender.send()
    record.prompted, record.sending = False, True  # killed between the send and "sent"
    done, _ = await _timed(_runner(client, record))
    assert done.status is TaskStatus.COMPLETED
    assert len(server.prompts) == 1


async def test_a_timeout_aborts_the_session(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["forever"] = [Hang()]
    done, took = await _timed(_runner(client, _record("forever", server, timeout=0.3)))
    assert done.status is TaskStatus.TIMED_OUT
    assert done.error == {"name": "timed_out", "message": "timed out; the session was aborted"}
    assert ("POST", f"/session/{done.session_id}/abort") in server.requests
    assert server.busy() == {}
    assert took < 1.5


async def test_a_cancel_aborts_the_session(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["forever"] = [Hang()]
    cancel = asyncio.Event()
    task = _runner(client, _record("forever", server), cancel=cancel)
    following = asyncio.create_task(task.run())
    await _until(lambda: bool(server.busy()))
    cancel.set()
    done = await asyncio.wait_for(following, 5)
    assert done.status is TaskStatus.ABORTED
    assert server.busy() == {}
    assert server.turns[0].aborted.is_set()


async def test_a_server_that_goes_away_for_good_ends_the_task_saying_so(
    server: FakeOpencode,
    client: AsyncOpencodeClient,
    script: Scripted,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "UNREACHABLE_LIMIT", 0.3)
    script.turns["crash"] = [Hang()]
    pool = HttpPool(transport(server))
    impatient = pool.client(Endpoint(url=URL, password="pw", name="oc-1", timeout=0.1))
    task = _runner(impatient, _record("crash", server), poll_interval=0.05)
    following = asyncio.create_task(task.run())
    await _until(lambda: bool(server.busy()))
    server.crash()
    with pytest.raises(ServerUnreachable, match="went away during the turn"):
        await asyncio.wait_for(following, 5)
    await pool.aclose()


class Servers:
    """The instance's server process as the fleet sees it (custody.py), without processes:
    `restart` puts another one in its place."""

    def __init__(self) -> None:
        self.current = ProcessIdentity(1000, 1.0)

    def restart(self) -> None:
        self.current = ProcessIdentity(self.current.pid + 1, self.current.create_time + 1)

    def custody(self) -> Custody:
        return Custody(lambda: self.current, alive=lambda identity: identity == self.current)


async def test_a_turn_whose_server_was_replaced_under_it_is_reported_lost_at_once(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    """The server was restarted under the turn and came back idle without it: the process
    that took the prompt is gone, so the turn is lost (a batch then runs the task again),
    said at the first look, not at the task's deadline as "timed out"."""
    script.turns["lost"] = [Hang()]
    servers = Servers()
    task = _runner(client, _record("lost", server), custody=servers.custody())
    following = asyncio.create_task(_timed(task))
    await _until(lambda: bool(server.busy()))
    server.crash()
    servers.restart()
    server.restart()
    began = time.monotonic()
    # "At once" is one poll and a look at the server, against the stall grace a turn whose
    # server merely went quiet gets (a loaded machine stretches the first, never the second).
    with pytest.raises(TurnLost, match="came back without it: the turn is lost"):
        await asyncio.wait_for(following, patient(5))
    assert time.monotonic() - began < min(patient(1.5), task.stall_grace / 2)


async def test_a_turn_whose_server_process_died_is_lost_without_waiting_for_a_restart(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    """Its server process is gone and nothing answers yet: the turn died with it, whatever
    comes back; the task says so at once instead of waiting out its patience."""
    script.turns["lost"] = [Hang()]
    servers = Servers()
    task = _runner(client, _record("lost", server), poll_interval=0.05,
                   custody=servers.custody())  # fmt: skip
    following = asyncio.create_task(task.run())
    await _until(lambda: bool(server.busy()))
    server.crash()  # refuses connections from now on
    servers.restart()  # its keeper is starting another process
    began = time.monotonic()
    with pytest.raises(TurnLost, match="its server process is gone"):
        await asyncio.wait_for(following, 5)
    assert time.monotonic() - began < task.patience / 2


async def test_a_turn_taken_but_not_started_when_its_server_came_back_is_followed(
    server: FakeOpencode, client: AsyncOpencodeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server went away (its stream broke) and came back showing the prompt stored,
    the session idle and no answer: a loaded server that took the prompt and has not
    started its turn. The same server process holds it: the turn is followed to its end,
    not reported lost (which made `ocm run` fail and a batch send it again)."""
    monkeypatch.setattr(runner, "LOST_TURN_GRACE", 0.1, raising=False)  # the old grace
    server.hold_starts()
    servers = Servers()
    task = _runner(client, _record("slow to start", server), poll_interval=0.05,
                   custody=servers.custody())  # fmt: skip
    following = asyncio.create_task(task.run())
    await _until(lambda: any(s.messages for s in server.sessions.values()))
    server.drop_streams()
    polls = server.requests.count(("GET", "/session/status"))
    await _until(
        lambda: following.done() or server.requests.count(("GET", "/session/status")) > polls + 5
    )
    server.release_starts()
    done = await asyncio.wait_for(following, 5)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert len(server.turns) == 1


async def test_where_nobody_can_tell_an_idle_unfinished_turn_is_lost_after_a_long_grace(
    server: FakeOpencode, script: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote instance's server process is not ours to see: a turn idle and unfinished
    since its server came back is taken for lost only after `stall_grace`."""
    monkeypatch.setattr(runner, "STALLED_TURN_GRACE", 0.3)
    script.turns["lost"] = [Hang()]
    pool = HttpPool(transport(server))
    impatient = pool.client(Endpoint(url=URL, password="pw", name="oc-1", timeout=0.05))
    task = _runner(impatient, _record("lost", server), poll_interval=0.05)
    assert task.stall_grace == 0.3
    following = asyncio.create_task(task.run())
    await _until(lambda: bool(server.busy()))
    server.crash()
    server.restart()
    began = time.monotonic()
    with pytest.raises(TurnLost, match=r"idle and unfinished for 0\.3 s"):
        await asyncio.wait_for(following, 5)
    assert 0.3 <= time.monotonic() - began < 2.0
    await pool.aclose()


async def _until(condition: Any, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.005)  # polling the fake's state, with a deadline

    await asyncio.wait_for(wait(), timeout)


async def test_the_event_stream_opens_while_the_session_is_made(
    server: FakeOpencode, script: Scripted
) -> None:
    """The stream is the directory's: opened at once, not after the session's round trip
    (issue 28.4). Here the session is made only once the stream was asked for."""
    subscribed = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/event":
            subscribed.set()
        elif request.method == "POST" and request.url.path == "/session":
            await asyncio.wait_for(subscribed.wait(), 2.0)  # TimeoutError: one after the other
        return await server.handle(request)

    pool = HttpPool(httpx.MockTransport(handle))
    try:
        done = await _runner(pool.client(ENDPOINT), _record("go", server)).run()
    finally:
        await pool.aclose()
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.text == "You said: go"


async def test_a_turn_that_ran_a_tool_asks_for_its_diff_beside_its_messages(
    server: FakeOpencode, script: Scripted
) -> None:
    """The stream showed a tool: the diff is asked for with the messages, not after them
    (issue 28.4). Here the messages are answered only once the diff was asked for."""
    script.turns["go"] = [Tool(output="done\n"), Reply("all done here")]
    diff_asked = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path.endswith("/diff"):
            diff_asked.set()
        elif request.method == "GET" and path.endswith("/message") and server.turns:
            await asyncio.wait_for(diff_asked.wait(), 2.0)  # TimeoutError: one after the other
        return await server.handle(request)

    pool = HttpPool(httpx.MockTransport(handle))
    try:
        done = await _runner(pool.client(ENDPOINT), _record("go", server)).run()
    finally:
        await pool.aclose()
    assert done.status is TaskStatus.COMPLETED, done.error
    assert [c["tool"] for c in done.tool_calls] == ["bash"]
    assert done.text == "all done here"


# -- the end of a task: its worktree settled before the record is saved -----------------------
async def test_a_worktree_task_is_settled_by_the_runners_persist_hook(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted, tmp_path: Any
) -> None:
    """Issue 24: the persist hook is the runner's (`runner.settling`); the worktree module
    only says what settling is. The agent's change is committed and listed once the task
    ends, in the record the runner saves, and no earlier."""
    import subprocess

    from opencode_manager.tasks import worktree as wt

    git = ["git", "-c", "user.email=t@example.test", "-c", "user.name=t"]
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "a.txt").write_text("original\n")
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    tree = wt.create(tmp_path / "wts", str(repo), wt.WorktreeRequest(), "t-1")
    (tmp_path / "wts" / "t-1" / "a.txt").write_text("the agent's change\n")
    saved = Saved()
    record = _record("go", server, worktree=tree.to_dict())
    done = await TaskRunner(client=client, record=record, persist=runner.settling(saved),
                            observer=Observer()).run()  # fmt: skip
    assert done.status is TaskStatus.COMPLETED, done.error
    assert all(r.worktree and r.worktree["head"] is None for r in saved if not r.status.final)
    last = saved[-1].worktree
    assert last is not None
    assert (last["committed"], last["files"]) == (True, [{"status": "modified", "path": "a.txt"}])
    settled_head = last["head"]
    await runner.settling(saved)(done)  # settled once: saving again commits nothing more
    assert saved[-1].worktree is not None
    assert saved[-1].worktree["head"] == settled_head
    assert not hasattr(wt, "settling")
