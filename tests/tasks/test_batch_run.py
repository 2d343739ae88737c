"""Batches in-process: two fake OpenCode 1.x servers (`opencode_manager.testing.opencode`)
behind the fleet's one HTTP client, registry rows pointing at a stand-in process. Claims,
placement, exactly-once resume through the checkpoint seam, retries elsewhere, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from opencode_manager import process
from opencode_manager.client import core
from opencode_manager.errors import ConflictError
from opencode_manager.instances.fleet import Fleet
from opencode_manager.instances.launch import port_of
from opencode_manager.lines import PINNED_VERSIONS, Line
from opencode_manager.models import KEEPER_CMD, BatchStatus, ProcessIdentity, TaskStatus
from opencode_manager.tasks import delivery, runner
from opencode_manager.tasks.batch import BatchOptions, BatchRun, create_batch
from opencode_manager.tasks.batchfile import BatchTask
from opencode_manager.tasks.store import TaskStore
from opencode_manager.tasks.summary import BatchSummary
from opencode_manager.testing import StandIn, fleet_of
from opencode_manager.testing.opencode import FakeOpencode, Hang, Pause, Reply, Step, transport

from helpers import fake_keeper_package, kill_trees, patient, spawn_sleeper

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]  # the waits below stretch under load

PROJECT = "/fake/project"
URLS = {"a": "http://127.0.0.1:4101", "b": "http://127.0.0.1:4102"}


class Killed(BaseException):
    """The runner process dies here (a SIGKILL: nothing of it runs any more)."""


class Scripted:
    def __init__(self) -> None:
        self.turns: dict[str, Sequence[Step]] = {}
        self.default: Sequence[Step] = (Pause(0.05), Reply("done"))

    def __call__(self, text: str) -> Sequence[Step]:
        return self.turns.get(text, self.default)


@dataclass
class Bed:
    fleet: Fleet
    store: TaskStore
    servers: dict[str, FakeOpencode]
    script: Scripted

    def create(
        self, prompts: Sequence[str], pins: Sequence[str | None] = (), **options: Any
    ) -> str:
        pinned = list(pins) or [None] * len(prompts)
        tasks = [BatchTask(id=f"t{i}", prompt=p, line=i + 1, instance=pin)
                 for i, (p, pin) in enumerate(zip(prompts, pinned, strict=True))]  # fmt: skip
        return create_batch(self.fleet, self.store, tasks, BatchOptions(**options)).id

    def turns(self) -> Counter[str]:
        """Model calls per prompt, on every server."""
        return Counter(t.prompt for s in self.servers.values() for t in s.turns)

    def where(self, batch_id: str) -> dict[str, str | None]:
        return {r.task_id or r.id: r.instance for r in self.store.list_tasks(batch_id=batch_id)}


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "RETRY_PAUSE", 0.0)
    monkeypatch.setattr(delivery, "LOOK_PAUSE", 0.01)
    monkeypatch.setattr(delivery, "SEND_GRACE", 0.1)


@pytest.fixture
async def bed(tmp_path: Path, stand_in: StandIn) -> AsyncIterator[Bed]:
    script = Scripted()
    servers = {name: FakeOpencode(url, directory=PROJECT, script=script)
               for name, url in URLS.items()}  # fmt: skip
    # A short OCM_HTTP_TIMEOUT: how long a task waits for a silent server scales with it.
    fleet = fleet_of(tmp_path / "ocm", [(n, u, stand_in.pid) for n, u in URLS.items()],
                     transport=transport(*servers.values()), directory=PROJECT,
                     environ={"OCM_HTTP_TIMEOUT": "0.1"})  # fmt: skip
    yield Bed(fleet, TaskStore(fleet.registry, secrets=fleet.secrets.values), servers, script)
    for server in servers.values():
        await server.aclose()
    await fleet.aclose()


async def _run(bed: Bed, batch_id: str, **kwargs: Any) -> BatchSummary:
    run = await asyncio.to_thread(BatchRun.claim, bed.fleet, bed.store, batch_id, **kwargs)
    return await run.run()


# -- running and claiming ------------------------------------------------------------------------
async def test_every_task_runs_once_on_the_fleet(bed: Bed) -> None:
    prompts = [f"task {i}" for i in range(4)]
    result = await _run(bed, bed.create(prompts, per_instance=2))
    assert result.counts == {"completed": 4}
    assert bed.turns() == dict.fromkeys(prompts, 1)
    assert all(s.turns for s in bed.servers.values())  # both instances took work
    assert sum(s.streams for s in bed.servers.values()) == 0  # the shared streams closed


async def test_a_batch_held_by_a_live_runner_is_refused_and_a_dead_ones_taken_over(
    bed: Bed,
) -> None:
    other = process.identity_of(os.getppid())  # another live process: a runner already
    assert other is not None
    held = bed.create(["held"])
    bed.store.claim_batch(held, other, process.is_alive)
    with pytest.raises(ConflictError, match=f"being run by process {other.pid}"):
        BatchRun.claim(bed.fleet, bed.store, held)
    orphaned = bed.create(["orphaned"])
    dead = ProcessIdentity(other.pid, other.create_time - 1000.0)  # that PID, long gone
    bed.store.claim_batch(orphaned, dead, process.is_alive)
    result = await _run(bed, orphaned)  # its runner is dead: this one takes over
    assert result.counts == {"completed": 1}
    assert bed.turns() == {"orphaned": 1}


# -- placement ----------------------------------------------------------------------------------
async def test_no_instance_takes_more_than_its_limit(bed: Bed) -> None:
    prompts = [f"task {i}" for i in range(6)]
    result = await _run(bed, bed.create(prompts, per_instance=1))
    assert result.counts == {"completed": 6}
    assert [s.most_at_once() for s in bed.servers.values()] == [1, 1]
    assert all(len(s.turns) >= 2 for s in bed.servers.values())


@pytest.mark.parametrize(("busy", "free"), [("a", "b"), ("b", "a")])
async def test_a_task_goes_to_the_least_busy_instance(bed: Bed, busy: str, free: str) -> None:
    bed.script.turns["someone else's work"] = [Hang()]
    bed.servers[busy].prompt("someone else's work")  # not the batch's: placement counts it
    batch_id = bed.create(["mine"], per_instance=2)
    result = await _run(bed, batch_id)
    assert result.counts == {"completed": 1}
    assert bed.where(batch_id) == {"t0": free}


async def test_pinned_tasks_run_on_their_instance_within_its_limit(bed: Bed) -> None:
    prompts = [f"pinned {i}" for i in range(3)]
    batch_id = bed.create(prompts, pins=["b"] * 3, per_instance=1)
    result = await _run(bed, batch_id)
    assert result.counts == {"completed": 3}
    assert set(bed.where(batch_id).values()) == {"b"}
    assert bed.servers["a"].turns == []
    assert bed.servers["b"].most_at_once() == 1


# -- exactly once -------------------------------------------------------------------------------
@pytest.mark.parametrize("step", ["session", "sending", "sent", "finished"])
async def test_a_runner_killed_at_any_step_resumes_with_one_send_each(bed: Bed, step: str) -> None:
    """The in-process twin of tests/tasks/test_exactly_once.py: the runner dies the second
    time a task passes `step`; the servers carry on (a turn sent runs to its end); a resume
    runs the rest. Every prompt reaches a model once."""
    prompts = [f"once {step} {i}" for i in range(4)]
    batch_id = bed.create(prompts, per_instance=1)
    passed = Counter[str]()

    async def checkpoint(name: str) -> None:
        passed[name] += 1
        if name == step and passed[name] == 2:
            raise Killed(step)

    with pytest.raises(Killed):
        await _run(bed, batch_id, checkpoint=checkpoint)
    assert bed.store.batch(batch_id).status == BatchStatus.RUNNING.value  # not finished
    result = await _run(bed, batch_id)
    assert result.counts == {"completed": 4}
    assert bed.turns() == dict.fromkeys(prompts, 1)


async def test_a_killed_run_leaves_no_task_running_behind(bed: Bed) -> None:
    """A runner that dies (or whose caller cancels it: an MCP call, a dashboard request)
    must not leave its tasks going on unseen in the event loop."""
    bed.script.default = [Hang()]
    batch_id = bed.create([f"long {i}" for i in range(2)], per_instance=1)
    run = asyncio.create_task(_run(bed, batch_id))
    await _until(lambda: sum(len(s.busy()) for s in bed.servers.values()) == 2)
    # Cancelled once both sends are recorded: a server is busy a moment before its runner has
    # the answer to the send, and a task cancelled in between is left `sending` (looked up by
    # its id on resume), which this assertion is not about (it failed 1 run in 12 on that).
    await _until(lambda: all(r.prompted for r in bed.store.list_tasks(batch_id=batch_id)))
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.sleep(0)  # one step of the loop for anything left to show
    left = [t for t in asyncio.all_tasks() if "BatchRun._run_one" in repr(t.get_coro())]
    assert left == []
    records = bed.store.list_tasks(batch_id=batch_id)
    assert {r.status for r in records} == {TaskStatus.RUNNING}  # as a kill leaves them
    assert all(r.prompted for r in records)  # so `resume` follows them, never resends


# -- retries and cancel -------------------------------------------------------------------------
async def test_a_task_that_never_reached_a_model_is_retried_on_another_instance(
    bed: Bed,
) -> None:
    bed.script.turns["busy b"] = [Hang()]
    bed.servers["b"].prompt("busy b")  # so that a, the least busy, is chosen first
    bed.servers["a"].down = True  # a's server refuses connections; its process lives
    batch_id = bed.create(["move me"], per_instance=2)
    result = await _run(bed, batch_id)
    assert result.counts == {"completed": 1}
    [record] = bed.store.list_tasks(batch_id=batch_id)
    assert record.instance == "b"
    assert record.attempts == 2
    assert ("POST", "/session") in bed.servers["a"].requests  # it was tried there first
    assert bed.turns()["move me"] == 1


async def test_cancel_aborts_the_running_tasks_and_cancels_the_rest(bed: Bed) -> None:
    bed.script.default = [Hang()]
    batch_id = bed.create([f"long {i}" for i in range(4)], per_instance=1)
    cancel = asyncio.Event()
    run = asyncio.create_task(_run(bed, batch_id, cancel=cancel))
    await _until(lambda: sum(len(s.busy()) for s in bed.servers.values()) == 2)
    cancel.set()
    result = await asyncio.wait_for(run, patient(10))
    assert result.counts == {"aborted": 2, "cancelled": 2}
    assert bed.store.batch(batch_id).status == BatchStatus.CANCELLED.value
    assert all(s.busy() == {} for s in bed.servers.values())  # the sessions were aborted
    assert all(t.aborted.is_set() for s in bed.servers.values() for t in s.turns)


async def test_a_cancel_requested_from_elsewhere_is_obeyed(bed: Bed) -> None:
    """`ocm batch cancel` writes the request into the registry; the runner acts on it."""
    bed.script.default = [Hang()]
    batch_id = bed.create([f"long {i}" for i in range(3)], per_instance=1)
    run = asyncio.create_task(_run(bed, batch_id))
    await _until(lambda: sum(len(s.busy()) for s in bed.servers.values()) == 2)
    await asyncio.to_thread(bed.store.request_cancel, batch_id)
    result = await asyncio.wait_for(run, patient(10))
    assert result.counts == {"aborted": 2, "cancelled": 1}


async def test_a_cancel_from_elsewhere_leaves_the_callers_event_alone(bed: Bed) -> None:
    """The caller's event is its Ctrl-C: `ocm batch` exits 12 for `ocm batch cancel`, 130
    only for its own interrupt, so the runner must not set it when the registry asks."""
    bed.script.default = [Hang()]
    batch_id = bed.create([f"long {i}" for i in range(2)], per_instance=1)
    mine = asyncio.Event()
    run = asyncio.create_task(_run(bed, batch_id, cancel=mine))
    await _until(lambda: sum(len(s.busy()) for s in bed.servers.values()) == 2)
    await asyncio.to_thread(bed.store.request_cancel, batch_id)
    result = await asyncio.wait_for(run, patient(10))
    assert (result.status.value, result.counts) == ("cancelled", {"aborted": 2})
    assert not mine.is_set()


async def test_a_turn_lost_with_its_restarted_server_is_run_again_once(bed: Bed) -> None:
    bed.script.turns["survive"] = [Hang()]
    batch_id = bed.create(["survive"], pins=["a"], per_instance=1)
    server = bed.servers["a"]
    run = asyncio.create_task(_run(bed, batch_id))
    await _until(lambda: bool(server.busy()))
    with StandIn() as replacement:  # the new server process
        # Recorded first: the batch looks from worker threads too, and must not find the
        # server back before its keeper's record of the new process (it would then wait
        # out the stall grace, as for a turn whose server merely went quiet).
        _replaced(bed, "a", replacement.pid)  # its keeper brings it back at once...
        server.crash()  # ...after the turn died with the old one
        server.restart()
        bed.script.turns["survive"] = [Reply("made it")]
        result = await asyncio.wait_for(run, patient(10))
    assert result.counts == {"completed": 1}
    [record] = bed.store.list_tasks(batch_id=batch_id)
    assert record.text == "made it"
    assert len(server.turns) == 2  # the lost turn, then the task's new attempt
    assert len({t.session_id for t in server.turns}) == 2  # in a new session


async def test_the_queue_waits_for_an_instance_its_keeper_is_restarting(
    bed: Bed, tmp_path: Path
) -> None:
    """A crash whose restart takes a while (a missed health check on a loaded machine): the
    task it held and the tasks queued behind it wait for the instance to return, instead
    of failing at once with no instance to take them."""
    bed.script.turns["held"] = [Hang()]
    batch_id = bed.create(["held", "next", "last"], pins=["a", "a", "a"], per_instance=1)
    server = bed.servers["a"]
    keeper = spawn_sleeper(  # a's keeper: a process whose argv is a keeper's
        [sys.executable, "-m", KEEPER_CMD, "a"], cwd=fake_keeper_package(tmp_path)
    )
    keeper_identity = process.identity_of(keeper.pid)
    assert keeper_identity is not None
    bed.fleet.registry.keeper_started("a", keeper_identity)
    with contextlib.ExitStack() as stack, StandIn() as first:
        stack.callback(kill_trees, [keeper])
        _replaced(bed, "a", first.pid)  # the server process that will take the prompt
        batch = await asyncio.to_thread(BatchRun.claim, bed.fleet, bed.store, batch_id)
        run = asyncio.create_task(batch.run())
        await _until(lambda: bool(server.busy()))
        server.crash()  # the server dies with the turn; its keeper will start another
        first.close()
        bed.fleet.registry.mark_restarting("a", last_exit="killed", error="no answer")
        await _until(lambda: run.done() or getattr(batch, "returning_since", None) is not None)
        assert not run.done(), f"gave up during the restart: {run.result().counts}"
        with StandIn() as replacement:
            bed.script.turns["held"] = [Reply("made it")]
            server.restart()
            _replaced(bed, "a", replacement.pid)
            result = await asyncio.wait_for(run, patient(10))
    assert result.counts == {"completed": 3}, bed.store.list_tasks(batch_id=batch_id)
    assert bed.turns() == Counter({"held": 2, "next": 1, "last": 1})


def _replaced(bed: Bed, name: str, pid: int) -> None:
    """The instance's server is another process now (its keeper restarted it)."""
    identity = process.identity_of(pid)
    assert identity is not None
    bed.fleet.registry.server_spawned(name, identity)
    url = URLS[name]
    bed.fleet.registry.mark_running(
        name,
        url=url,
        port=port_of(url),
        version=PINNED_VERSIONS[Line.V1],  # FakeOpencode is 1.x
    )


class Stopped:
    """The server stopped (a SIGSTOP, swap, a swamped machine) from a task's "sending" step
    for longer than its runner waits: no request gets an answer (the client's read times
    out), and the prompt's POST is taken `at_once` (stored, its answer lost) or waits in
    the server's socket until `take_queued`. It runs again when the batch looks at the
    session (`GET /session/{id}/message`: the send's lookups ask for the message by its id
    and never get that far while it is stopped)."""

    def __init__(self, server: FakeOpencode, *, at_once: bool) -> None:
        self.server = server
        self.at_once = at_once
        self.stopped = False
        self.resumed_at: int | None = None  # how many requests it had had by then
        self.queued: list[httpx.Request] = []
        self._through: set[int] = set()
        server.before = self._before

    async def checkpoint(self, step: str) -> None:
        if step == "sending" and self.resumed_at is None:
            self.stopped = True

    def since_resumed(self, method: str, path: str) -> int:
        if self.resumed_at is None:
            return 0
        return self.server.requests[self.resumed_at :].count((method, path))

    async def take_queued(self) -> None:
        """The POSTs that waited in its socket are taken now, long after their client
        gave up."""
        for request in self.queued:
            await self._take(request)
        self.queued.clear()

    async def _take(self, request: httpx.Request) -> None:
        self._through.add(id(request))
        await self.server.handle(request)

    async def _before(self, request: httpx.Request) -> httpx.Response | None:
        if id(request) in self._through or not self.stopped:
            return None
        method, path = request.method, request.url.path
        if method == "GET" and path.endswith("/message"):
            self.stopped = False  # continued: this and all later requests are answered
            self.resumed_at = len(self.server.requests) - 1
            return None
        if method == "POST" and path.endswith("/prompt_async"):
            if self.at_once:
                await self._take(request)
            else:
                self.queued.append(request)
        raise httpx.ReadTimeout("no answer: the server is stopped", request=request)


async def test_a_prompt_taken_by_a_stopped_server_is_followed_when_it_has_not_started(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen under load (tests/tasks/test_stalls.py): the server took the prompt while
    stopped; the runner gave up on the send; when the batch looked, the prompt was stored
    and the session idle, its turn not started yet (a loaded server). That is no turn lost
    with its server: it is followed, never sent again in a new session."""
    monkeypatch.setattr(runner, "UNREACHABLE_LIMIT", 0.2)
    server = bed.servers["a"]
    stall = Stopped(server, at_once=True)
    server.hold_starts()
    batch_id = bed.create(["slow to start"], pins=["a"])
    run = asyncio.create_task(_run(bed, batch_id, checkpoint=stall.checkpoint))
    # Until the batch has decided: it follows the session (polls it again), or sends anew.
    await _until(
        lambda: stall.since_resumed("GET", "/session/status") >= 2 or len(server.prompts) >= 2
    )
    server.release_starts()
    result = await asyncio.wait_for(run, patient(10))
    assert result.counts == {"completed": 1}
    assert bed.turns() == {"slow to start": 1}
    assert server.requests.count(("POST", "/session")) == 1  # no second attempt
    [record] = bed.store.list_tasks(batch_id=batch_id)
    assert record.attempts == 1
    assert record.prompted is True


async def test_a_prompt_a_stopped_server_takes_late_is_sent_again_only_with_its_own_id(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompt's POST waited in the stopped server's socket; when the batch looked it
    was not there yet. It is sent again with its own id into its own session (the late
    first copy then runs nothing), never in a new session with a new id (which the late
    copy made a second turn at the model)."""
    monkeypatch.setattr(runner, "UNREACHABLE_LIMIT", 0.2)
    server = bed.servers["a"]
    stall = Stopped(server, at_once=False)
    batch_id = bed.create(["taken late"], pins=["a"])
    run = asyncio.create_task(_run(bed, batch_id, checkpoint=stall.checkpoint))
    await _until(lambda: len(server.prompts) >= 1)  # the batch sent it again
    await stall.take_queued()  # and the first copy is taken after all
    result = await asyncio.wait_for(run, patient(10))
    assert result.counts == {"completed": 1}
    assert bed.turns() == {"taken late": 1}
    assert len({p["messageID"] for p in server.prompts}) == 1  # both copies: one id
    [record] = bed.store.list_tasks(batch_id=batch_id)
    assert record.attempts == 1


async def _until(condition: Any, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.005)  # polling the fakes' state, with a deadline

    await asyncio.wait_for(wait(), patient(timeout))
