"""Detached tasks (`ocm run --async`, then `ocm wait`) keep their promises: an ask answered
through ocm while nobody followed the task is in its record. In-process over the fake
OpenCode (`testing.opencode`), through the facade, as the CLI and MCP use it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from opencode_manager import AsyncManager, Settings, TaskOptions, TaskStatus
from opencode_manager.limits.leases import Lease, Waiting, leases_of
from opencode_manager.models import TaskRecord
from opencode_manager.tasks.store import TaskStore
from opencode_manager.testing import StandIn, fleet_of
from opencode_manager.testing.opencode import FakeOpencode, Pause, Permission, Question, Reply
from opencode_manager.testing.opencode import transport as fake_transport

pytestmark = pytest.mark.timeout(30)

URL = "http://127.0.0.1:4101"


@pytest.fixture
def settings(tmp_path: Path, stand_in: StandIn) -> Settings:
    fleet = fleet_of(tmp_path / "ocm", [("oc-1", URL, stand_in.pid)], directory="/p")
    fleet.close()
    return fleet.settings


def _script(text: str) -> list[object]:
    if text == "ask":
        return [Permission(), Pause(0.1), Question(), Reply("went on")]
    return [Reply(f"You said: {text}")]


@pytest.mark.parametrize("leave", [True, False])
def test_asks_answered_through_ocm_while_nobody_followed_are_in_the_record(
    settings: Settings, leave: bool
) -> None:
    """Whatever the policy, nobody follows a detached task until `ocm wait`: the asks its
    agent made and somebody answered with `ocm answer` (the facade's reply_permission and
    answer_question; MCP's tools) are recorded by the answer, once each, and `ocm wait`
    adds no second entry."""
    server = FakeOpencode(URL, directory="/p", script=_script)  # type: ignore[arg-type]

    async def main() -> TaskRecord:
        async with AsyncManager(settings, transport=fake_transport(server)) as ocm:
            options = TaskOptions(instance="oc-1", leave_asks=leave)
            sent = await ocm.run("ask", options, detach=True)
            assert sent.session_id is not None
            permission = await server.wait_for_ask()
            await ocm.reply_permission(sent.session_id, permission["id"], "always")
            stored = await ocm.task(sent.id)
            assert [(a["id"], a["answer"]) for a in stored.asks] == [(permission["id"], "always")]
            question = await _next_ask(server, permission["id"])
            await ocm.answer_question(sent.session_id, question["id"], [["Blue"]])
            done = await ocm.wait(sent.id, timeout=10)
        await server.aclose()
        return done

    done = asyncio.run(main())
    assert done.status is TaskStatus.COMPLETED, done.error
    assert [(a["kind"], a["answer"]) for a in done.asks] == [
        ("permission", "always"),
        ("question", "answered: Blue"),
    ]
    assert done.asks[0]["request"] == {"permission": "external_directory", "patterns": ["/etc/*"]}
    assert done.asks[1]["request"] == {"questions": ["Pick a colour?"]}
    assert all(a["session_id"] == done.session_id for a in done.asks)


async def _next_ask(server: FakeOpencode, after: str) -> dict[str, Any]:
    async def other() -> dict[str, Any]:
        while True:
            asks = [a for a in server.pending() if a["id"] != after]
            if asks:
                return asks[0]
            await asyncio.sleep(0.01)  # polling the fake for the next ask, with a deadline

    return await asyncio.wait_for(other(), 5)


def test_an_answer_is_noted_once_in_the_task_that_owns_the_session(tmp_path: Path) -> None:
    """By the ask's id: a pending entry takes the answer, an answered one stays; a subagent's
    ask goes to the task of the session it runs under; a session no task owns is no error."""
    from opencode_manager.database import Database

    store = TaskStore(Database(tmp_path / "registry.db"))
    older = TaskRecord(id="t-old", prompt="p", status=TaskStatus.COMPLETED, created_at=1.0,
                       session_id="ses_parent")  # fmt: skip
    task = TaskRecord(id="t-new", prompt="p", status=TaskStatus.RUNNING, created_at=2.0,
                      session_id="ses_parent")  # fmt: skip
    task.asks.append({"kind": "permission", "id": "per_1", "session_id": "ses_parent",
                      "answer": "pending", "request": {}})  # fmt: skip
    store.add(older)
    store.add(task)
    entry = {"kind": "question", "id": "que_2", "session_id": "ses_child", "answer": "rejected",
             "request": {"questions": []}}  # fmt: skip
    assert store.note_ask(["ses_child", "ses_parent"], entry) == "t-new"
    assert store.note_ask(["ses_child", "ses_parent"], {**entry, "answer": "again"}) == "t-new"
    answered = {**entry, "id": "per_1", "session_id": "ses_parent", "answer": "once"}
    assert store.note_ask(["ses_parent"], answered) == "t-new"
    assert store.note_ask(["ses_nobody"], entry) is None
    asks = store.get("t-new").asks
    assert [(a["id"], a["answer"]) for a in asks] == [("per_1", "once"), ("que_2", "rejected")]
    assert store.get("t-old").asks == []


# -- a provider slot per detached turn ----------------------------------------------------------
def _turns(text: str) -> list[object]:
    if text == "first":
        return [Pause(0.6), Reply("one")]
    return [Reply(f"You said: {text}")]


def test_a_detached_turn_holds_its_provider_slot_until_it_ends(settings: Settings) -> None:
    """`--concurrency 1`, two `ocm run --async`: the second waits, `queued`, until the
    first's turn has ended on its server, although nobody waits for the first: its slot
    was handed over when its sender returned, and the waiter looks at the holder's task.
    Ended tasks hold no slot."""
    server = FakeOpencode(URL, directory="/p", script=_turns)  # type: ignore[arg-type]

    async def main() -> None:
        async with AsyncManager(settings, transport=fake_transport(server)) as ocm:
            await ocm.limit_set("fake", concurrency=1)
            options = TaskOptions(instance="oc-1", model="fake/m")
            first = await ocm.run("first", options, detach=True)
            assert leases_of(ocm.fleet.registry, first.id)  # held after its sender returned
            second = asyncio.create_task(ocm.run("second", options, detach=True))
            queued = await _until(ocm, "second", TaskStatus.QUEUED)
            assert queued.queue is not None
            assert queued.queue["reason"] == "concurrency"
            assert len(server.turns) == 1
            sent = await asyncio.wait_for(second, 15)
            assert server.turns[0].ended_at is not None
            assert server.turns[1].started_at >= server.turns[0].ended_at
            ended = ocm.store.get(first.id)  # recorded by the waiter that looked
            assert ended.status is TaskStatus.COMPLETED
            assert not leases_of(ocm.fleet.registry, first.id)
            done = await ocm.wait(sent.id, timeout=10)
            assert done.status is TaskStatus.COMPLETED, done.error
            assert not leases_of(ocm.fleet.registry, sent.id)
        await server.aclose()

    asyncio.run(main())


async def _until(ocm: AsyncManager, prompt: str, status: TaskStatus) -> TaskRecord:
    async def seen() -> TaskRecord:
        while True:
            found = [r for r in ocm.store.list_tasks() if r.prompt == prompt]
            if found and found[0].status is status:
                return found[0]
            await asyncio.sleep(0.02)  # polling the store, with a deadline

    return await asyncio.wait_for(seen(), 10)


def test_a_handed_over_slot_ends_with_its_holder_its_task_or_its_expiry(tmp_path: Path) -> None:
    """A detached turn's lease, held in the name of the server process holding the turn, is
    taken back once that process is gone (the turn died with it); one held by the task
    itself (nobody can tell: a remote server) is never taken for dead, and ends when the
    task's final record is saved, or at its expiry."""
    from opencode_manager.database import Database
    from opencode_manager.limits.leases import TASK_HELD, Slots, Ticket
    from opencode_manager.limits.table import set_limit
    from opencode_manager.models import ProcessIdentity

    registry = Database(tmp_path / "registry.db")
    set_limit(registry, "fake", concurrency=1)
    server = ProcessIdentity(4242, 100.0)
    gone: set[ProcessIdentity] = set()
    now = [1000.0]
    slots = Slots(registry, clock=lambda: now[0], alive=lambda who: who.pid > 0 and who not in gone,
                  me=ProcessIdentity(1, 1.0))  # fmt: skip

    tickets: dict[str, Ticket] = {}

    def take(owner: str) -> Lease | Waiting:  # each task asks with its one ticket
        ticket = tickets.setdefault(owner, slots.ticket("fake", None, owner))
        return slots.try_take(ticket)

    held = take("t-a")
    assert isinstance(held, Lease)
    slots.hand_over(held, server, hold=60.0)
    slots.give_back(held)  # the sender's own exit: the handed-over lease stays
    assert isinstance(take("t-b"), Waiting)
    gone.add(server)  # its server restarted: the turn is lost, the slot free
    second = take("t-b")
    assert isinstance(second, Lease)
    slots.hand_over(second, None, hold=60.0)  # a remote server: the task holds it
    assert registry.query("SELECT pid FROM leases")[0][0] == TASK_HELD.pid
    assert isinstance(take("t-c"), Waiting)
    store = TaskStore(registry)
    store.add(TaskRecord(id="t-b", prompt="p", status=TaskStatus.RUNNING, created_at=1.0))
    store.save(TaskRecord(id="t-b", prompt="p", status=TaskStatus.COMPLETED, created_at=1.0))
    third = take("t-c")  # the task was seen ended: its slot came back with its record
    assert isinstance(third, Lease)
    slots.hand_over(third, None, hold=60.0)
    assert isinstance(take("t-d"), Waiting)
    now[0] += 61.0  # nobody saw it end: the backstop
    assert isinstance(take("t-d"), Lease)
