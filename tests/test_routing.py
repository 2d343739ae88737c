"""The routing layer: each name looked up once per command, local instances to `lifecycle`,
cluster ones to their agent (a fake link here), and Ray left unloaded by local commands."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from opencode_manager import routing
from opencode_manager.errors import ConflictError, NotFoundError
from opencode_manager.instances.fleet import Fleet
from opencode_manager.models import InstanceRecord, InstanceSpec, State


def _local(fleet: Fleet, name: str) -> None:
    """A local row with nothing of it running (its `ocm start` is gone)."""
    with fleet.registry.transaction() as db:
        fleet.registry.reserve(db, InstanceSpec(name=name, dir="/p"), port=None, starter=None)
    fleet.registry.mark_stopped(name)


def _cluster(fleet: Fleet, name: str) -> None:
    spec = InstanceSpec(name=name, dir="/p", remote=True, node="node-a")
    with fleet.registry.transaction() as db:  # a closed port: nothing answers it
        fleet.registry.add_remote(db, spec, url="http://127.0.0.1:9", version="1.18.33")


class FakeLink:
    """What the routing layer asks of the cluster, answered without Ray."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, list[str]]] = []

    def _note(self, what: str, records: list[InstanceRecord]) -> list[str]:
        self.asked.append((what, [r.name for r in records]))
        return [r.name for r in records]

    def stop(self, records: list[InstanceRecord], timeout: float) -> list[dict[str, Any]]:
        return [{"name": n, "was": "running", "status": "stopped"}
                for n in self._note("stop", records)]  # fmt: skip

    def forget(self, records: list[InstanceRecord]) -> list[str]:
        return self._note("forget", records)

    def logs(self, record: InstanceRecord, lines: int) -> list[str]:
        self._note("logs", [record])
        return ["INFO on its host", "ERROR there too"]

    def status(self, record: InstanceRecord) -> dict[str, Any]:
        self._note("status", [record])
        return {"pid": 4242, "restarts": 2, "processes": [{"pid": 4242, "rss_bytes": 1}]}


@pytest.fixture
def link(monkeypatch: pytest.MonkeyPatch) -> FakeLink:
    fake = FakeLink()
    monkeypatch.setattr(routing, "_link", lambda fleet: fake)
    return fake


@pytest.fixture
def looked_up(home_fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every reference the fleet is asked to find, in order."""
    asked: list[str] = []
    find: Callable[[str], Any] = home_fleet.find

    def counted(ref: str) -> Any:
        asked.append(ref)
        return find(ref)

    monkeypatch.setattr(home_fleet, "find", counted)
    return asked


def test_split_is_by_node() -> None:
    def record(name: str, node: str | None) -> InstanceRecord:
        spec = InstanceSpec(name=name, dir="/p", node=node)
        return InstanceRecord(name, spec, State.RUNNING, created_at=0.0, updated_at=0.0)

    here, there = record("a", None), record("b", "n")
    assert routing.split([there, here]) == ([here], [there])


def test_a_local_stop_looks_its_name_up_once_and_leaves_the_cluster_alone(
    home_fleet: Fleet, link: FakeLink, looked_up: list[str]
) -> None:
    _local(home_fleet, "l1")
    with pytest.raises(ConflictError, match="l1 is not running"):
        routing.stop(home_fleet, ["l1"], timeout=5)
    assert looked_up == ["l1"]
    assert link.asked == []


def test_bad_arguments_are_said_before_any_name_is_looked_up(
    home_fleet: Fleet, link: FakeLink, looked_up: list[str]
) -> None:
    _cluster(home_fleet, "c1")
    with pytest.raises(Exception, match="invalid --timeout 0"):
        routing.stop(home_fleet, ["c1"], timeout=0)
    with pytest.raises(Exception, match="not both"):
        routing.stop(home_fleet, ["c1"], all=True, timeout=5)
    assert looked_up == []
    assert link.asked == []


def test_cluster_instances_go_to_their_agent_and_local_ones_stay_here(
    home_fleet: Fleet, link: FakeLink, looked_up: list[str]
) -> None:
    _local(home_fleet, "l1")
    _cluster(home_fleet, "c1")
    done = routing.stop(home_fleet, ["c1", "c1"], timeout=5)
    assert [(r.name, r.status) for r in done] == [("c1", "stopped")]
    removed = routing.remove(home_fleet, ["l1", "c1"])
    assert removed == ["l1", "c1"]
    assert looked_up == ["c1", "c1", "l1", "c1"]  # each reference once per command
    assert link.asked == [("stop", ["c1"]), ("forget", ["c1"])]
    assert home_fleet.registry.find("l1") is None  # forgotten here, by lifecycle


def test_logs_read_here_there_and_of_a_removed_instance_each_looked_up_once(
    home_fleet: Fleet, link: FakeLink, looked_up: list[str]
) -> None:
    settings = home_fleet.settings
    _local(home_fleet, "l1")
    _cluster(home_fleet, "c1")
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    settings.log_path("l1").write_text("INFO local\n")
    settings.log_path("gone").write_text("ERROR kept after rm\n")
    found = routing.logs(home_fleet, ["l1", "gone", "c1"], lines=5, pattern=None, level="ERROR")
    assert [(x.instance, x.line) for x in found] == [
        ("gone", "ERROR kept after rm"), ("c1", "ERROR there too")]  # fmt: skip
    assert looked_up == ["l1", "gone", "c1"]
    assert link.asked == [("logs", ["c1"])]
    with pytest.raises(NotFoundError):
        routing.logs(home_fleet, ["nobody"], lines=5, pattern=None, level=None)


def test_status_of_a_cluster_instance_adds_its_hosts_view_after_one_lookup(
    home_fleet: Fleet, link: FakeLink, looked_up: list[str]
) -> None:
    _cluster(home_fleet, "c1")
    report = asyncio.run(routing.status(home_fleet, "c1"))
    assert (report.info.pid, report.info.restarts) == (4242, 2)
    assert report.processes == [{"pid": 4242, "rss_bytes": 1}]
    assert looked_up == ["c1"]
    assert link.asked == [("status", ["c1"])]


LOADED = """
import json, sys
from opencode_manager.cli.main import main
codes = [main(args) for args in ({commands})]
print(json.dumps({{"codes": codes, "loaded": sorted(
    m for m in sys.modules if m.split(".")[0] == "ray" or m.startswith("opencode_manager.cluster")
)}}))
"""


@pytest.mark.integration
def test_a_local_start_restart_and_stop_load_no_ray(model_env: list[str], tmp_path: Path) -> None:
    env = [arg for item in model_env for arg in ("--env", item)]
    commands = [
        ["start", "noray", "--dir", str(tmp_path), *env],
        ["restart", "noray"],
        ["stop", "noray"],
        ["start", "--existing", "noray"],
        ["stop", "--all"],
    ]
    code = LOADED.format(commands=", ".join(json.dumps(c) for c in commands))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 0, 0, 0, 0], "loaded": []}, out.stderr
