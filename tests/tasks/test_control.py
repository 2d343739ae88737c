"""Provider control around a task's turns (tasks/control.py, the runner's budget): a fake
OpenCode 1.x over `httpx.MockTransport`, slots in a real registry, the backoff's sleep
injected. Each test checks what the record says and what the server was sent."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.client import Endpoint, core
from opencode_manager.client.pool import HttpPool
from opencode_manager.client.shells import AsyncOpencodeClient
from opencode_manager.limits import Limit, Slots, parse_scope, set_limits
from opencode_manager.limits.breaker import BreakerPolicy, BreakerState
from opencode_manager.models import TaskRecord, TaskStatus
from opencode_manager.registry import Registry
from opencode_manager.tasks import delivery
from opencode_manager.tasks.control import Control
from opencode_manager.tasks.runner import Observer, TaskRunner
from opencode_manager.testing.opencode import Fail, FakeOpencode, Hang, Pause, Reply, transport
from opencode_manager.testing.script import Step

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

URL = "http://127.0.0.1:4101"
ENDPOINT = Endpoint(url=URL, password="pw", name="oc-1", timeout=1.0)
OVERLOADED = "Service Unavailable: the provider is overloaded"


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "RETRY_PAUSE", 0.0)
    monkeypatch.setattr(delivery, "LOOK_PAUSE", 0.01)


class Scripted:
    """The steps of each prompt's turn, by prompt text (a continuation: by its start)."""

    def __init__(self) -> None:
        self.turns: dict[str, Sequence[Step]] = {}

    def __call__(self, text: str) -> Sequence[Step]:
        for start, steps in self.turns.items():
            if text == start or (start.endswith("*") and text.startswith(start[:-1])):
                return steps
        return [Reply(f"You said: {text}")]


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


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry.db")
    yield reg
    reg.close()


class Saved(list[TaskRecord]):
    async def __call__(self, record: TaskRecord) -> None:
        self.append(copy.deepcopy(record))


class Sleeps(list[float]):
    """The backoffs asked for (none of them waited)."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _record(prompt: str, server: FakeOpencode, **fields: Any) -> TaskRecord:
    values: dict[str, Any] = {"id": f"t-{prompt[:8]}", "prompt": prompt,
                              "status": TaskStatus.PENDING, "created_at": time.time(),
                              "directory": server.directory, "model": "fake/model-a"}  # fmt: skip
    values.update(fields)
    return TaskRecord(**values)


def _runner(client: AsyncOpencodeClient, record: TaskRecord, saved: Saved, **kw: Any) -> TaskRunner:
    observer = kw.pop("observer", Observer())
    return TaskRunner(client=client, record=record, persist=saved, observer=observer, **kw)


# -- budgets -------------------------------------------------------------------------------------
async def test_a_task_past_its_cost_budget_is_interrupted_and_ends_budget_exceeded(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    """The first step costs more than the budget; the turn would go on for ever (Hang): it is
    aborted at once and the record says what it spent."""
    script.turns["spend"] = [Reply("first step", cost=0.05, tokens={"input": 100}), Hang()]
    record = _record("spend", server, max_cost=0.01, timeout=10.0)
    began = time.monotonic()
    done = await _runner(client, record, Saved()).run()
    assert done.status is TaskStatus.BUDGET_EXCEEDED, done.error
    assert time.monotonic() - began < 5.0  # the spend stopped it, not the timeout
    assert done.error is not None
    assert done.error["name"] == "BudgetExceeded"
    assert done.error["kind"] == "cost"
    assert "spent $0.0500 of $0.01" in done.error["message"]
    assert done.cost == pytest.approx(0.05)
    assert server.turns[0].aborted.is_set()


async def test_a_token_budget_passed_by_a_finished_turn_still_ends_budget_exceeded(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["wordy"] = [Reply("done", tokens={"input": 500, "output": 100})]
    done = await _runner(client, _record("wordy", server, max_tokens=50), Saved()).run()
    assert done.status is TaskStatus.BUDGET_EXCEEDED
    assert done.error is not None
    assert done.error["kind"] == "tokens"
    assert done.error["total_tokens"] == 600


async def test_a_task_within_its_budget_completes(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["cheap"] = [Reply("done", cost=0.001, tokens={"input": 10})]
    done = await _runner(client, _record("cheap", server, max_cost=0.01), Saved()).run()
    assert done.status is TaskStatus.COMPLETED
    assert done.cost == pytest.approx(0.001)


# -- recovery --------------------------------------------------------------------------------------
async def test_a_transient_provider_error_is_continued_in_the_same_session(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    """The prompt was taken, the provider failed: the task goes on in the same session with a
    continuation after the backoff; the prompt is never sent again."""
    script.turns["flaky"] = [Fail(OVERLOADED)]
    script.turns["Continue the task*"] = [Reply("recovered")]
    sleeps = Sleeps()
    record = _record("flaky", server, recover=2)
    done = await _runner(client, record, Saved(), control=Control(sleep=sleeps)).run()
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.text == "recovered"
    prompts = [t.prompt for t in server.turns]
    assert prompts[0] == "flaky"
    assert prompts.count("flaky") == 1
    assert prompts[1].startswith("Continue the task")
    assert {t.session_id for t in server.turns} == {done.session_id}
    assert [t["status"] for t in done.turns] == ["failed", "completed"]
    assert done.turns[0]["trouble"] == "transient"
    assert done.turns[0]["action"] == "continue"
    assert OVERLOADED in str(done.turns[0]["error"])
    assert len(sleeps) == 1
    assert sleeps[0] >= 2.0
    assert done.attempts == 1


async def test_without_recover_a_transient_error_fails_the_task(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["flaky"] = [Fail(OVERLOADED)]
    sleeps = Sleeps()
    done = await _runner(
        client, _record("flaky", server), Saved(), control=Control(sleep=sleeps)
    ).run()
    assert done.status is TaskStatus.FAILED
    assert [t.prompt for t in server.turns] == ["flaky"]
    assert done.turns[0]["action"] == "give_up"


async def test_a_refused_model_falls_back_to_the_next_and_the_record_says_which(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted
) -> None:
    script.turns["refused"] = [Fail("model not found: model-a")]
    script.turns["Continue the task*"] = [Reply("done on b")]
    record = _record("refused", server, fallbacks=["fake/model-b"])
    done = await _runner(client, record, Saved(), control=Control(sleep=Sleeps())).run()
    assert done.status is TaskStatus.COMPLETED, done.error
    assert [t["model"] for t in done.turns] == ["fake/model-a", "fake/model-b"]
    assert done.turns[0]["action"] == "fallback"
    assert done.model == "fake/model-b"
    assert done.step_models[-1] == "fake/model-b"
    assert server.turns[1].body.get("model") == {"providerID": "fake", "modelID": "model-b"}


# -- shared slots ----------------------------------------------------------------------------------
async def test_tasks_over_a_full_limit_wait_queued_with_their_place(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted, registry: Registry
) -> None:
    """One slot for the provider: the second task shows `queued`, place 1, while the first
    holds it, and never overlaps it at the model."""
    set_limits(registry, [Limit(parse_scope("fake"), 1, None)])
    script.turns["first"] = [Pause(0.5), Reply("one")]
    script.turns["second"] = [Reply("two")]
    control = Control(slots=Slots(registry))
    saved_a, saved_b = Saved(), Saved()
    shown: list[dict[str, Any]] = []
    a = _runner(client, _record("first", server), saved_a, control=control)
    b = _runner(client, _record("second", server), saved_b, control=control,
                observer=Observer(on_queue=shown.append))  # fmt: skip
    first = asyncio.create_task(a.run())
    while not server.turns:  # the first holds the slot and is at the model
        await asyncio.sleep(0.01)
    one, two = await asyncio.gather(first, b.run())
    assert (one.status, two.status) == (TaskStatus.COMPLETED, TaskStatus.COMPLETED)
    queued = [r for r in saved_b if r.status is TaskStatus.QUEUED]
    assert queued
    assert queued[0].queue is not None
    assert queued[0].queue["place"] == 1
    assert queued[0].queue["reason"] == "concurrency"
    assert two.queue is None
    assert shown == [{"provider": "fake", "model": "fake/model-a", "place": 1,
                      "reason": "concurrency", "scope": "fake"}]  # fmt: skip
    t1, t2 = server.turns
    assert t1.ended_at is not None
    assert t2.started_at >= t1.ended_at
    assert two.turns[0]["queued_s"] > 0


async def test_transient_failures_open_the_providers_breaker_fleet_wide(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted, registry: Registry
) -> None:
    script.turns["down"] = [Fail(OVERLOADED)]
    slots = Slots(registry, breaker_policy=BreakerPolicy(threshold=1, cooldown=60.0))
    done = await _runner(
        client, _record("down", server), Saved(), control=Control(slots=slots)
    ).run()
    assert done.status is TaskStatus.FAILED
    assert slots.breaker("fake").state is BreakerState.OPEN


async def test_queued_tasks_take_the_slot_by_priority_then_submission(
    server: FakeOpencode, client: AsyncOpencodeClient, script: Scripted, registry: Registry
) -> None:
    set_limits(registry, [Limit(parse_scope("fake"), 1, None)])
    script.turns["holder"] = [Pause(1.0), Reply("held")]
    control = Control(slots=Slots(registry))
    saved = {name: Saved() for name in ("holder", "early", "late", "urgent")}

    def task(name: str, priority: int = 0) -> TaskRunner:
        record = _record(name, server, priority=priority)
        return _runner(client, record, saved[name], control=control)

    running = [asyncio.create_task(task("holder").run())]
    while not server.turns:
        await asyncio.sleep(0.01)
    for name, priority in (("early", 0), ("late", 0), ("urgent", 5)):
        running.append(asyncio.create_task(task(name, priority).run()))
        while not any(r.status is TaskStatus.QUEUED for r in saved[name]):
            await asyncio.sleep(0.01)  # queued before the next one is submitted
    done = await asyncio.gather(*running)
    assert all(r.status is TaskStatus.COMPLETED for r in done)
    assert [t.prompt for t in server.turns] == ["holder", "urgent", "early", "late"]
    places = {name: [r.queue["place"] for r in saved[name] if r.queue] for name in saved}
    assert set(places["urgent"]) == {1}  # ahead of the two submitted before it
    assert places["late"][0] == 2
    assert 3 in places["late"]  # pushed back by the urgent one
