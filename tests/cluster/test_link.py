"""`cluster up`'s reconcile of the driver's rows with what the agents run (unit: a link whose
Ray seams are replaced, no Ray)."""

from __future__ import annotations

from typing import Any

from opencode_manager.cluster.link import LOST, Link
from opencode_manager.instances.fleet import Fleet
from opencode_manager.models import InstanceSpec, State


class FakeLink(Link):
    """Alive nodes and what each one's agent says in its hello."""

    def __init__(self, fleet: Fleet, hellos: dict[str, list[dict[str, Any]]]) -> None:
        self.fleet = fleet
        self.address = "127.0.0.1:6379"
        self.hellos = hellos

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": n, "NodeManagerAddress": "10.0.0.1", "Alive": True} for n in self.hellos]

    def _handle(self, node_id: str) -> Any | None:
        return node_id

    def _call(
        self, handle: Any, method: str, *args: Any, wait: float | None = None, **kw: Any
    ) -> Any:
        assert method == "hello"
        return {"pid": 7, "home": "/h", "free_bytes": 1, "instances": self.hellos[handle]}


def _row(fleet: Fleet, name: str, node: str) -> None:
    spec = InstanceSpec(name=name, dir="/p", remote=True, node=node)
    with fleet.registry.transaction() as db:
        fleet.registry.add_remote(db, spec, url="http://10.0.0.1:4100", version="1.18.33")


def _described(name: str, node: str) -> dict[str, Any]:
    return {"name": name, "node_id": node, "url": "http://10.0.0.1:4100", "port": 4100}


def test_rows_are_set_right_by_what_the_hosts_run(home_fleet: Fleet) -> None:
    fleet = home_fleet
    _row(fleet, "runs", "node-a")
    _row(fleet, "stopped-there", "node-a")  # the driver was killed before recording the stop
    _row(fleet, "host-gone", "node-b")
    report = FakeLink(fleet, {"node-a": [_described("runs", "node-a")]}).reconcile()

    assert report.lost == ["host-gone"]
    assert report.stopped == ["stopped-there"]
    assert fleet.registry.get("runs").state is State.RUNNING
    assert fleet.registry.get("stopped-there").state is State.STOPPED
    gone = fleet.registry.get("host-gone")
    assert gone.state is State.CRASHED
    assert (gone.error or "").startswith(LOST)
    again = FakeLink(fleet, {"node-a": [_described("runs", "node-a")]}).reconcile()
    assert (again.lost, again.stopped) == ([], [])  # nothing left to set right


class StartDuringReconcile(FakeLink):
    """An `ocm start --cluster` records its instance while this link asks the agents."""

    def _call(
        self, handle: Any, method: str, *args: Any, wait: float | None = None, **kw: Any
    ) -> Any:
        answer = super()._call(handle, method, *args, wait=wait, **kw)
        if self.fleet.registry.find("just-started") is None:
            _row(self.fleet, "just-started", "node-a")
        return answer


def test_an_instance_recorded_while_the_agents_are_asked_is_left_running(
    home_fleet: Fleet,
) -> None:
    report = StartDuringReconcile(home_fleet, {"node-a": []}).reconcile()
    assert report.stopped == []
    assert home_fleet.registry.get("just-started").state is State.RUNNING


def test_an_interrupted_up_stops_between_hosts_and_marks_nothing_lost(home_fleet: Fleet) -> None:
    import threading

    import pytest

    from opencode_manager.errors import Interrupted

    fleet = home_fleet
    _row(fleet, "on-b", "node-b")
    stop = threading.Event()

    class Interrupting(FakeLink):
        def _call(
            self, handle: Any, method: str, *args: Any, wait: float | None = None, **kw: Any
        ) -> Any:
            stop.set()  # Ctrl-C while the first host answers
            return super()._call(handle, method, *args, wait=wait, **kw)

    link = Interrupting(fleet, {"node-a": [], "node-b": [_described("on-b", "node-b")]})
    with pytest.raises(Interrupted, match="1 of 2 hosts reconciled"):
        link.reconcile(stop)
    assert fleet.registry.get("on-b").state is State.RUNNING  # its host was not reached: kept
