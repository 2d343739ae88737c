"""A `start --cluster` that fails part-way leaves nothing running that no registry lists
(unit: the driver's `Link` against in-process fake agents; no Ray, no servers).

The fakes keep the host agent's contract (agent.py): `start` records what it starts on its
host (tagged with the start), `discard` cancels a start of that tag and stops and forgets
what it created there, idempotently. A host outlives its agent: what it runs stays when the
agent is killed, and a new agent sees it. Each test ends on the invariant the issue asks
for: whatever a host still runs has a driver row that `ocm stop --all` and `ocm cluster
down` reach.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from opencode_manager import routing
from opencode_manager.cluster.deadlines import Deadlines
from opencode_manager.cluster.link import Link
from opencode_manager.errors import (
    ConflictError,
    Interrupted,
    NotFoundError,
    OcmError,
    StartError,
    StateError,
    UsageError,
)
from opencode_manager.instances import credentials
from opencode_manager.instances.fleet import Fleet
from opencode_manager.lines import Line
from opencode_manager.models import InstanceSpec, State

from helpers import forge_row

WAIT = 2.0  # the --timeout of these starts: the fakes answer at once or never


# -- fake Ray ----------------------------------------------------------------------------------
class TaskError(Exception):
    """What `ray.get` raises for an actor method that raised (Ray's RayTaskError)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause

    def __str__(self) -> str:
        return f"ray::HostAgent() (pid=1)\n  Traceback (most recent call last):\n{self.cause}"


def task_error(cause: Exception) -> TaskError:
    """As Ray's `as_instanceof_cause`: an instance of both TaskError and the cause's class,
    whose text is Ray's traceback."""
    if isinstance(cause, OcmError):
        dual = type(f"TaskError({type(cause).__name__})", (TaskError, type(cause)), {})
        return dual(cause)  # type: ignore[no-any-return]
    return TaskError(cause)


class GetTimeout(TimeoutError):
    """Ray's GetTimeoutError is a TimeoutError too."""


class FakeRay:
    def __init__(self) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=32)
        self.calls: list[concurrent.futures.Future[Any]] = []
        self.interrupt = threading.Event()  # a Ctrl-C arrives in the driver's next wait

    def is_initialized(self) -> bool:
        return True

    def _block(self, refs: list[Any], timeout: float | None) -> set[Any]:
        """Wait like Ray does, in slices, so that a Ctrl-C lands in the middle of it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.interrupt.is_set():
                self.interrupt.clear()
                raise KeyboardInterrupt
            done, _ = concurrent.futures.wait(
                refs, timeout=0.01, return_when=concurrent.futures.FIRST_COMPLETED
            )
            if done or (deadline is not None and time.monotonic() >= deadline):
                return set(done)

    def get(self, ref: concurrent.futures.Future[Any], timeout: float | None = None) -> Any:
        if not self._block([ref], timeout):
            raise GetTimeout("Get timed out: some object(s) not ready.")
        try:
            return ref.result()
        except Exception as exc:
            raise task_error(exc) from None

    def wait(
        self, refs: list[concurrent.futures.Future[Any]], *, num_returns: int = 1,
        timeout: float | None = None, **_: Any,
    ) -> tuple[list[Any], list[Any]]:  # fmt: skip
        done = self._block(refs, timeout)
        ready = [r for r in refs if r in done][:num_returns]
        return ready, [r for r in refs if r not in ready]

    def kill(self, handle: Any) -> None:
        handle.agent.dead = True


# -- fake hosts and agents ---------------------------------------------------------------------
class Host:
    """What runs on one node: outlives its agent."""

    def __init__(self, node_id: str, address: str) -> None:
        self.node_id = node_id
        self.address = address
        self.runs: dict[str, dict[str, Any]] = {}  # name -> row (state, tag, port)
        self.lock = threading.Lock()

    def live(self) -> set[str]:
        with self.lock:
            return {n for n, r in self.runs.items() if r["state"] in ("starting", "running")}


class Agent:
    """The host agent's contract, in memory."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.dead = False
        self.gate: threading.Event | None = None  # set: a start waits until the test opens it
        self.frozen: threading.Event | None = None  # set: every call waits until it opens
        self.freezes_on_start = False  # a start freezes the agent (it stops answering)
        self.discard_fails = False
        self.fail_at: int | None = None  # a start: the instance at this index fails
        self.undoes_itself = True  # a start that fails stops what it started (agent.py)
        self.on_start: Callable[[list[str]], None] | None = None
        self.starts: dict[str | None, tuple[threading.Event, threading.Event]] = {}
        self.cancelled: set[str | None] = set()
        self.calls: list[str] = []

    def _describe(self, name: str) -> dict[str, Any]:
        row = self.host.runs[name]
        version = row.get("opencode") or "1.18.33"  # a version chosen is the one it runs
        return {
            "name": name, "url": f"http://{self.host.address}:{row['port']}",
            "port": row["port"], "version": version, "status": row["state"], "pid": 1,
            "directory": "/p", "password": f"pw-{name}", "node_id": self.host.node_id,
        }  # fmt: skip

    def hello(self) -> dict[str, Any]:
        live = sorted(self.host.live())
        return {
            "node_id": self.host.node_id, "address": self.host.address, "hostname": "h",
            "home": f"/home/{self.host.node_id}", "pid": 100, "free_bytes": 8 << 30,
            "instances": [self._describe(n) for n in live],
        }  # fmt: skip

    def start(
        self, names: list[str], *, directory: str, env: Any = (), timeout: float = 120,
        tag: str | None = None, opencode: str | None = None, **_: Any,
    ) -> list[dict[str, Any]]:  # fmt: skip
        if tag is not None and tag in self.cancelled:
            raise Interrupted(f"on {self.host.address}: start cancelled before it began")
        cancel, done = threading.Event(), threading.Event()
        self.starts[tag] = (cancel, done)
        try:
            if self.on_start is not None:
                self.on_start(list(names))
            with self.host.lock:
                clash = [n for n in names if n in self.host.runs]
                if clash:
                    raise ConflictError(f"an instance named {clash[0]!r} already exists")
                for i, name in enumerate(names):
                    self.host.runs[name] = {"state": "starting", "tag": tag, "port": 4100 + i,
                                            "opencode": opencode}  # fmt: skip
            for i, name in enumerate(names):
                if i == self.fail_at:
                    if self.undoes_itself:
                        self._undo(names, tag)
                    else:
                        with self.host.lock:
                            self.host.runs[name]["state"] = "crashed"
                    raise StartError(f"on {self.host.address}: {name} failed to start")
            if self.gate is not None:
                while not self.gate.wait(0.01):  # the slow part of a loaded host's start
                    if cancel.is_set():
                        self._undo(names, tag)
                        raise Interrupted(f"on {self.host.address}: start interrupted")
            with self.host.lock:
                for name in names:
                    self.host.runs[name]["state"] = "running"
            return [self._describe(n) for n in names]
        finally:
            done.set()

    def discard(self, names: list[str], tag: str | None, timeout: float = 10) -> list[str]:
        if self.discard_fails:
            raise ConflictError("cannot write registry.db: database is locked")
        self.cancelled.add(tag)
        pending = self.starts.get(tag)
        if pending is not None:
            pending[0].set()
            pending[1].wait()
        return self._undo(names, tag)

    def _undo(self, names: list[str], tag: str | None) -> list[str]:
        with self.host.lock:
            mine = [n for n in names if n in self.host.runs and self.host.runs[n]["tag"] == tag]
            for name in mine:
                del self.host.runs[name]
        return mine

    def forget(self, names: list[str]) -> list[str]:
        with self.host.lock:
            unknown = [n for n in names if n not in self.host.runs]
            if unknown:
                raise NotFoundError(f"no instance named {unknown[0]!r}")
            for name in names:
                del self.host.runs[name]
        return list(names)

    def stop(self, names: list[str], timeout: float = 10) -> list[dict[str, Any]]:
        out = []
        with self.host.lock:
            for name in names:
                row = self.host.runs.get(name)
                if row is None:
                    raise NotFoundError(f"no instance named {name!r}")
                if row["state"] not in ("starting", "running"):
                    raise ConflictError(f"{name} is not running; nothing to stop")
                out.append({"name": name, "was": row["state"], "status": "stopped"})
                row["state"] = "stopped"
        return out

    def stop_all(self, timeout: float = 10) -> list[dict[str, Any]]:
        return self.stop(sorted(self.host.live()), timeout)


class Method:
    def __init__(self, handle: Handle, name: str) -> None:
        self.handle, self.name = handle, name

    def remote(self, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        agent = self.handle.agent

        def run() -> Any:
            if self.name == "start" and agent.freezes_on_start:
                agent.frozen = threading.Event()
            if agent.frozen is not None:
                agent.frozen.wait()
            if agent.dead:
                raise RuntimeError("The actor died unexpectedly before finishing this task.")
            agent.calls.append(self.name)
            return getattr(agent, self.name)(*args, **kwargs)

        future = self.handle.ray.pool.submit(run)
        self.handle.ray.calls.append(future)
        return future


class Handle:
    def __init__(self, agent: Agent, ray: FakeRay) -> None:
        self.agent, self.ray = agent, ray

    def __getattr__(self, name: str) -> Method:
        return Method(self, name)


class FakeLink(Link):
    """A driver whose Ray is in-process fakes: hosts by node id, one agent each."""

    def __init__(self, fleet: Fleet, hosts: dict[str, Host]) -> None:
        self.fleet = fleet
        self.address = "127.0.0.1:6379"
        self.ray = FakeRay()  # type: ignore[assignment]
        self.hosts_by_id = hosts
        self.agents = {n: Agent(h) for n, h in hosts.items()}
        # The driver's deadlines, scaled down: the fakes answer at once or not at all.
        self.deadlines = Deadlines(
            call=0.5, guard=0.0, launch_each=0.0, stop_margin=0.1, undo_stop=0.1
        )

    def nodes(self) -> list[dict[str, Any]]:
        return [
            {"NodeID": n, "NodeManagerAddress": h.address, "Alive": True}
            for n, h in self.hosts_by_id.items()
        ]

    def _handle(self, node_id: str) -> Any | None:
        agent = self.agents.get(node_id)
        if agent is None or agent.dead:
            return None
        return Handle(agent, self.ray)  # type: ignore[arg-type]

    def _create(self, node: dict[str, Any]) -> Any:
        node_id = str(node["NodeID"])
        self.agents[node_id] = Agent(self.hosts_by_id[node_id])
        return Handle(self.agents[node_id], self.ray)  # type: ignore[arg-type]

    def close(self) -> None:
        for agent in self.agents.values():  # let every parked call end
            for event in (agent.gate, agent.frozen):
                if event is not None:
                    event.set()
        self.ray.pool.shutdown(wait=True)


@pytest.fixture
def two(home_fleet: Fleet) -> Iterator[FakeLink]:
    hosts = {"node-a": Host("node-a", "10.0.0.1"), "node-b": Host("node-b", "10.0.0.2")}
    link = FakeLink(home_fleet, hosts)
    yield link
    link.close()


def _start(link: FakeLink, count: int = 2, **kw: Any) -> list[str]:
    return link.start(name=None, count=count, directory="/p", spread=True, timeout=WAIT, **kw)


def _settle(link: FakeLink) -> None:
    """Let every fake call that is still running end (a slow start goes on after the driver
    gave up on it, as a real agent's does)."""
    for agent in link.agents.values():
        for event in (agent.gate, agent.frozen):
            if event is not None:
                event.set()
    concurrent.futures.wait(list(link.ray.calls), timeout=10)
    assert all(f.done() for f in link.ray.calls), "a fake agent call never ended"


def _reachable(link: FakeLink) -> set[str]:
    """Driver rows that `ocm stop --all` acts on (running, or a start not finished)."""
    return {
        r.name
        for r in link.fleet.records()
        if r.spec.node and r.state in (State.RUNNING, State.STARTING)
    }


def _unlisted(link: FakeLink) -> set[str]:
    """What the hosts run that the driver's registry does not reach."""
    running = {n for h in link.hosts_by_id.values() for n in h.live()}
    return running - _reachable(link)


def _running_anywhere(link: FakeLink) -> set[str]:
    return {n for h in link.hosts_by_id.values() for n in h.live()}


# -- the cases -----------------------------------------------------------------------------------
def test_a_start_that_outlives_the_deadline_is_undone_on_its_host(two: FakeLink) -> None:
    """Host B's agent is still starting when the driver's deadline passes (a loaded host):
    the driver asks it to undo that start, and nothing of it is left on either host."""
    two.agents["node-b"].gate = threading.Event()
    with pytest.raises(OcmError) as caught:
        _start(two)
    _settle(two)
    assert _running_anywhere(two) == set()
    assert two.fleet.records() == []
    message = str(caught.value)
    assert isinstance(caught.value, StartError), message
    assert "\n" not in message
    assert "10.0.0.2" in message, message
    assert "did not finish" in message, message


def test_one_host_failing_undoes_the_other_and_its_own_partial_start(two: FakeLink) -> None:
    """Host B fails one of its two instances and leaves the other running (an agent that
    does not undo its own start): the driver undoes both hosts' work."""
    b = two.agents["node-b"]
    b.fail_at, b.undoes_itself = 1, False
    with pytest.raises(OcmError) as caught:
        _start(two, count=4)
    _settle(two)
    assert _running_anywhere(two) == set()
    assert two.fleet.records() == []
    message = str(caught.value)
    assert isinstance(caught.value, StartError), message
    assert message.startswith("cluster start failed: on 10.0.0.2: oc-"), message
    assert "\n" not in message, "the agent's error, not Ray's traceback"


def test_ctrl_c_while_the_agents_start_undoes_the_start(two: FakeLink) -> None:
    """A KeyboardInterrupt in the driver while it waits for the agents: they are asked to
    undo what they started before it goes on."""
    two.agents["node-b"].gate = threading.Event()
    two.agents["node-a"].on_start = lambda names: two.ray.interrupt.set()
    with pytest.raises((KeyboardInterrupt, Interrupted)):
        _start(two)
    _settle(two)
    assert _running_anywhere(two) == set()
    assert two.fleet.records() == []


def test_the_cancel_event_undoes_the_start(two: FakeLink) -> None:
    """`ocm start --cluster`'s first Ctrl-C (or SIGTERM) sets the cancel event."""
    two.agents["node-b"].gate = threading.Event()
    cancel = threading.Event()
    two.agents["node-a"].on_start = lambda names: cancel.set()
    with pytest.raises(Interrupted, match="stopped and removed"):
        _start(two, cancel=cancel)
    _settle(two)
    assert _running_anywhere(two) == set()
    assert two.fleet.records() == []


def test_a_driver_killed_mid_start_leaves_rows_that_stop_all_reaches(
    two: FakeLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the registry holds when each agent is asked is what a SIGKILLed driver leaves:
    every instance being started has its row there, and `ocm stop --all` stops it."""
    seen: dict[str, set[str]] = {}

    def snapshot(names: list[str]) -> None:
        for name in names:
            seen[name] = _reachable(two)

    for agent in two.agents.values():
        agent.on_start = snapshot
    started = _start(two)
    assert sorted(seen) == sorted(started)
    assert all(name in rows for name, rows in seen.items()), seen

    # The driver is gone; its rows say `starting`: `stop --all` reaches them through the agents.
    for name in started:
        forge_row(two.fleet.registry, name, state=State.STARTING, url=None)
    monkeypatch.setattr(routing, "_link", lambda fleet: two)
    done = routing.stop(two.fleet, all=True, timeout=5)
    assert sorted(r.name for r in done) == sorted(started)
    _settle(two)
    assert _running_anywhere(two) == set()


def test_cluster_up_adopts_what_a_killed_driver_was_starting(two: FakeLink) -> None:
    """Rows a killed driver left `starting`, whose hosts run them: `cluster up` records them
    running, with the password the host gave, so the driver can reach them."""
    started = _start(two)
    for name in started:
        forge_row(two.fleet.registry, name, state=State.STARTING, url=None)
        credentials.delete_password(two.fleet.settings, name)
    two.reconcile()
    for name in started:
        row = two.fleet.registry.get(name)
        assert row.state is State.RUNNING, row
        assert row.url, row
        assert credentials.read_password(two.fleet.settings, name) == f"pw-{name}"


def test_cluster_up_forgets_rows_of_a_start_that_never_ran(two: FakeLink) -> None:
    """A killed driver's `starting` rows whose hosts run nothing of them (the agent undid
    it, or never got the call): `cluster up` forgets them."""
    spec = InstanceSpec(name="ghost", dir="/p", remote=True, node="node-b")
    with two.fleet.registry.transaction() as db:
        two.fleet.registry.reserve(db, spec, port=None, starter=None)
    report = two.reconcile()
    assert two.fleet.registry.find("ghost") is None
    assert "ghost" in report.to_dict().get("abandoned", [])


def test_cluster_up_keeps_a_row_its_agent_cannot_undo_yet(two: FakeLink) -> None:
    """Undoing a killed start's row may fail on its host (a locked registry there): `cluster
    up` still reconciles the rest, and keeps the row for next time."""
    spec = InstanceSpec(
        name="ghost", dir="/p", remote=True, node="node-b", env=(("OCM_CLUSTER_START", "t"),)
    )
    with two.fleet.registry.transaction() as db:
        two.fleet.registry.reserve(db, spec, port=None, starter=None)
    two.agents["node-b"].discard_fails = True
    report = two.reconcile()
    assert report.abandoned == []
    assert two.fleet.registry.get("ghost").state is State.STARTING
    two.agents["node-b"].discard_fails = False
    assert two.reconcile().abandoned == ["ghost"]
    assert two.fleet.registry.find("ghost") is None


def test_a_driver_registry_write_that_fails_undoes_the_start(
    two: FakeLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agents started everything, then the driver cannot record it: it undoes the
    start rather than leave servers no registry here lists."""
    registry = two.fleet.registry
    broken = threading.Event()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise StateError("cannot write registry.db: No space left on device")

    for method in ("mark_running_on_host", "add_remote"):
        original = getattr(registry, method)

        def patched(*a: Any, _orig: Any = original, **k: Any) -> Any:
            if broken.is_set():
                fail()
            return _orig(*a, **k)

        monkeypatch.setattr(registry, method, patched)
    for agent in two.agents.values():
        agent.on_start = lambda names: broken.set()
    with pytest.raises(OcmError) as caught:
        _start(two)
    assert "No space left" in str(caught.value)
    _settle(two)
    assert _unlisted(two) == set()
    assert _running_anywhere(two) == set()


def test_an_agent_that_cannot_undo_leaves_rows_that_say_so(two: FakeLink) -> None:
    """Host B's agent stops answering altogether (frozen): its instances cannot be undone
    from here, so their rows stay, and the error says how to reach them."""
    two.agents["node-b"].freezes_on_start = True
    with pytest.raises(OcmError) as caught:
        _start(two)
    left = {r.name for r in two.fleet.records()}
    _settle(two)  # the agent answers again: it goes on with its start, then the undo
    assert _unlisted(two) == set()
    assert left, "the rows of host B's instances stay"
    assert all(two.fleet.registry.get(n).spec.node == "node-b" for n in left)
    message = str(caught.value)
    assert isinstance(caught.value, StartError), message
    assert "ocm stop --all" in message, message
    assert "\n" not in message


def test_cluster_down_reaches_a_host_whose_agent_is_gone(two: FakeLink) -> None:
    """Host B's agent died; its keepers and servers did not: `cluster down` has a new agent
    stop them instead of forgetting their rows with the servers still up."""
    started = _start(two)
    two.agents["node-b"].dead = True  # its keepers and servers run on
    two.down(5)
    assert _running_anywhere(two) == set(), started
    assert two.fleet.records() == []


def test_the_binary_chosen_travels_to_every_host_and_the_rows_get_its_line(
    two: FakeLink,
) -> None:
    """`ocm start --cluster --opencode 2.1.2`: each agent starts its instances with that
    binary, and the driver's rows carry the version their agents report (so the 2.x dialect
    reaches them)."""
    names = _start(two, opencode="2.1.2")
    assert {r["opencode"] for h in two.hosts_by_id.values() for r in h.runs.values()} == {"2.1.2"}
    for name in names:
        record = two.fleet.registry.get(name)
        assert record.version == "2.1.2"
        endpoint = two.fleet.endpoint(record)
        assert endpoint is not None
        assert endpoint.line is Line.V2


@pytest.mark.parametrize("given", ["bin/opencode", "3.0.0"])
def test_a_binary_the_hosts_cannot_find_is_refused_before_anything_starts(
    two: FakeLink, given: str
) -> None:
    with pytest.raises(UsageError, match=f"invalid --opencode {given}"):
        _start(two, opencode=given)
    assert two.fleet.records() == []
    assert _running_anywhere(two) == set()
