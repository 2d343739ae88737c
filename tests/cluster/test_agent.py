"""The host agent's half of an undoable cluster start (unit: the real `HostAgent` on this
test's OCM_HOME, its `lifecycle.start` replaced by a seam that records rows and no servers).

What the driver's rollback relies on (test_start_rollback.py fakes it): a start is all or
nothing on its host, and `discard` by tag undoes it whether it is running, over, or not yet
begun, touching nothing another start or the host's own user created.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from opencode_manager.cluster.agent import START_TAG, HostAgent, started_by
from opencode_manager.errors import ConflictError, Interrupted, StartError
from opencode_manager.instances import lifecycle
from opencode_manager.instances.fleet import Fleet
from opencode_manager.models import InstanceSpec

Seam = Callable[..., list[str]]


def _reserve(fleet: Fleet, requested: list[InstanceSpec]) -> list[str]:
    """What the real start does first: the rows, in one transaction (a clash: none)."""
    with fleet.registry.transaction() as db:
        taken = fleet.registry.names(db)
        for spec in requested:
            if spec.name in taken:
                raise ConflictError(f"an instance named {spec.name!r} already exists")
            fleet.registry.reserve(db, spec, port=None)
    return [s.name for s in requested]


def _existing(fleet: Fleet, name: str) -> None:
    """An instance of the host's own user (no tag), stopped."""
    with fleet.registry.transaction() as db:
        fleet.registry.reserve(db, InstanceSpec(name=name, dir="/p"), port=None)
    fleet.registry.mark_stopped(name)


@pytest.fixture
def agent(home_fleet: Fleet) -> HostAgent:
    host = HostAgent("node-b", "10.0.0.2")
    host.fleet = home_fleet
    return host


def _seam(monkeypatch: pytest.MonkeyPatch, body: Seam) -> list[list[str]]:
    calls: list[list[str]] = []

    def start(fleet: Fleet, requested: list[InstanceSpec], **kw: Any) -> list[str]:
        calls.append([s.name for s in requested])
        return body(fleet, requested, **kw)

    monkeypatch.setattr(lifecycle, "start", start)
    return calls


def _start(agent: HostAgent, names: list[str], tag: str) -> Any:
    return agent.start(names, directory="/tmp", tag=tag, undo_timeout=1.0)


def test_a_failed_start_forgets_what_it_created_and_nothing_else(
    agent: HostAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    _existing(agent.fleet, "oc-9")

    def fails(fleet: Fleet, requested: list[InstanceSpec], **_: Any) -> list[str]:
        _reserve(fleet, requested)
        raise StartError("oc-2 failed to start: it exited (1 of 2 failed); see `ocm logs oc-2`")

    _seam(monkeypatch, fails)
    with pytest.raises(StartError) as caught:
        asyncio.run(_start(agent, ["oc-1", "oc-2"], "t1"))
    message = str(caught.value)
    assert message.startswith("on 10.0.0.2: oc-2 failed to start"), message
    assert "ocm logs" not in message, "its row is gone here: the message names its log file"
    assert str(agent.fleet.settings.log_path("oc-2")) in message
    assert [r.name for r in agent.fleet.records()] == ["oc-9"]


def test_a_name_clash_leaves_the_existing_instance_alone(
    agent: HostAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    _existing(agent.fleet, "oc-1")
    _seam(monkeypatch, lambda fleet, requested, **_: _reserve(fleet, requested))
    with pytest.raises(ConflictError, match="already exists"):
        asyncio.run(_start(agent, ["oc-1"], "t2"))
    assert asyncio.run(agent.discard(["oc-1"], "t2", 1.0)) == []
    assert [r.name for r in agent.fleet.records()] == ["oc-1"]


def test_every_instance_it_starts_carries_the_start_tag(
    agent: HostAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[InstanceSpec] = []

    def records(fleet: Fleet, requested: list[InstanceSpec], **_: Any) -> list[str]:
        seen.extend(requested)
        raise StartError("stop here")

    _seam(monkeypatch, records)
    with pytest.raises(StartError):
        asyncio.run(_start(agent, ["oc-1", "oc-2"], "t3"))
    assert [dict(s.env)[START_TAG] for s in seen] == ["t3", "t3"]
    assert all(s.hostname == "10.0.0.2" for s in seen)


@pytest.mark.parametrize("chosen", ["2.1.2", "/opt/oc2/bin/opencode", None])
def test_the_binary_the_driver_chose_is_in_every_spec_it_starts(
    agent: HostAgent, monkeypatch: pytest.MonkeyPatch, chosen: str | None
) -> None:
    """What makes a cluster instance run a 2.x (kept in its spec, so restarts keep it)."""
    seen: list[InstanceSpec] = []

    def records(fleet: Fleet, requested: list[InstanceSpec], **_: Any) -> list[str]:
        seen.extend(requested)
        raise StartError("stop here")

    _seam(monkeypatch, records)
    started = agent.start(
        ["oc-1", "oc-2"], directory="/tmp", tag="t4", undo_timeout=1.0, opencode=chosen
    )
    with pytest.raises(StartError):
        asyncio.run(started)
    assert [s.binary for s in seen] == [chosen, chosen]


def test_discard_cancels_a_start_in_flight_and_one_not_yet_begun(
    agent: HostAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    reserved = threading.Event()

    def slow(
        fleet: Fleet, requested: list[InstanceSpec], *, cancel: threading.Event, **_: Any
    ) -> list[str]:
        names = _reserve(fleet, requested)
        reserved.set()
        deadline = time.monotonic() + 30
        while not cancel.wait(0.01):  # a loaded host's start, until it is cancelled
            assert time.monotonic() < deadline, "never cancelled"
        for name in names:  # what lifecycle's roll-back does
            lifecycle.forget(fleet, name)
        raise Interrupted(f"start interrupted: {', '.join(names)} stopped and removed")

    calls = _seam(monkeypatch, slow)

    async def story() -> tuple[BaseException | None, list[str], list[str]]:
        starting = asyncio.ensure_future(_start(agent, ["oc-1", "oc-2"], "t4"))
        await asyncio.to_thread(reserved.wait, 30)
        rows = agent.fleet.records()
        assert [started_by(r) for r in rows] == ["t4", "t4"]
        undone = await agent.discard(["oc-1", "oc-2"], "t4", 1.0)
        again = await agent.discard(["oc-1", "oc-2"], "t4", 1.0)  # idempotent
        try:
            await starting
        except Exception as exc:
            return exc, undone, again
        return None, undone, again

    error, undone, again = asyncio.run(story())
    assert isinstance(error, Interrupted)
    assert str(error).startswith("on 10.0.0.2: start interrupted")
    assert (undone, again) == ([], [])  # the start undid itself; nothing was left
    assert agent.fleet.records() == []

    # A start whose undo came first (Ray may run them in either order) does nothing.
    with pytest.raises(Interrupted, match="undone before it began"):
        asyncio.run(_start(agent, ["oc-1", "oc-2"], "t4"))
    assert calls == [["oc-1", "oc-2"]]


def test_discard_after_a_start_that_succeeded_forgets_its_instances(
    agent: HostAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver gave up on a start the host finished: its rows are undone by tag."""
    _existing(agent.fleet, "oc-3")

    def reserved_only(fleet: Fleet, requested: list[InstanceSpec], **_: Any) -> list[str]:
        return _reserve(fleet, requested)

    _seam(monkeypatch, reserved_only)
    monkeypatch.setattr(HostAgent, "_infos", _no_infos)
    asyncio.run(_start(agent, ["oc-1", "oc-2"], "t5"))
    undone = asyncio.run(agent.discard(["oc-1", "oc-2", "oc-3"], "t5", 1.0))
    assert undone == ["oc-1", "oc-2"]
    assert [r.name for r in agent.fleet.records()] == ["oc-3"]


async def _no_infos(self: HostAgent, names: list[str]) -> list[dict[str, Any]]:
    return [{"name": n} for n in names]
