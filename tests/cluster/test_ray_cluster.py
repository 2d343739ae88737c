"""Fleets across hosts on Ray: placement (pure) and a two-node cluster on this machine.

The cluster test runs `ray_scenario.py` inside a private network namespace, where Ray stays
on loopback (outside one, Ray binds the machine's external address: see TOOLING-FACTS).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.cluster.hosts import SERVER_BYTES, Host, place
from opencode_manager.errors import ConflictError, UsageError

from helpers import patient

GIB = 1024**3
SCENARIO = Path(__file__).with_name("ray_scenario.py")
#: What the scenario needs, with a margin, on a machine busy with two busy loops and
#: another suite (it took 4.5 min at load 8-14, half of that quiet): `patient` stretches it
#: on a busier one, up to what the test's own cut-off leaves.
SCENARIO_S = 420.0
#: How long the scenario gets to stop the Ray nodes, keepers and servers it started when
#: the test gives up on it (SIGTERM: its `finally` stops each by PID).
CLEANUP_S = 180.0
#: pytest's cut-off, the last resort: the scenario's deadline and its cleanup come first.
TEST_TIMEOUT = 1200.0


# -- placement (pure) ------------------------------------------------------------------------
def test_spread_evens_out_the_count() -> None:
    hosts = [Host("a", "10.0.0.1", 8 * GIB, 1), Host("b", "10.0.0.2", 2 * GIB, 0)]
    assert Counter(place(hosts, 5, spread=True)) == {"a": 2, "b": 3}


def test_by_room_fills_the_host_with_the_most_free_memory_first() -> None:
    hosts = [Host("a", "10.0.0.1", 8 * GIB, 0), Host("b", "10.0.0.2", 2 * GIB, 0)]
    chosen = place(hosts, 4)
    assert chosen[0] == "a"
    # Each placement counts a server's memory against its host.
    left = 8 * GIB - chosen.count("a") * SERVER_BYTES
    assert left + SERVER_BYTES >= 2 * GIB - chosen.count("b") * SERVER_BYTES


def test_per_host_caps_and_says_how_much_room_is_left() -> None:
    hosts = [Host("a", "x", GIB, 1), Host("b", "y", GIB, 0)]
    assert Counter(place(hosts, 3, per_host=2)) == {"a": 1, "b": 2}
    with pytest.raises(ConflictError, match="room for 3 more"):
        place(hosts, 4, per_host=2)
    with pytest.raises(UsageError):
        place(hosts, 1, per_host=0)
    with pytest.raises(ConflictError, match="cluster up"):
        place([], 1)


# -- a real two-node cluster -----------------------------------------------------------------
def _scenario(tmp_path: Path) -> dict[str, Any]:
    if shutil.which("unshare") is None:
        pytest.fail("the Ray cluster test needs unshare (util-linux)", pytrace=False)
    out = tmp_path / "scenario.json"
    argv = ["unshare", "-n", "sh", "-c",
            f'ip link set lo up && exec "{sys.executable}" "{SCENARIO}" "{out}"']  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            deadline = min(patient(SCENARIO_S), TEST_TIMEOUT - CLEANUP_S - 60)
            _, errors = proc.communicate(timeout=deadline)
        except BaseException:  # given up on (this timeout, pytest's, Ctrl-C): it cleans up
            proc.terminate()  # the scenario (sh exec'd it): SIGTERM runs its `finally`
            try:
                proc.communicate(timeout=CLEANUP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
    assert proc.returncode == 0, errors[-6000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.mark.integration
@pytest.mark.timeout(TEST_TIMEOUT)
def test_a_fleet_across_two_ray_nodes(tmp_path: Path, opencode_bin: str) -> None:
    seen = _scenario(tmp_path)
    up = seen["up"]
    assert len(up["hosts"]) == 2
    assert {h["agent"] for h in up["hosts"]} <= {"created", "up"}

    # A start whose agent on host B stopped answering once it had begun: the driver gave
    # up on it (B's deadline passed; on a loaded machine A's server may miss its --timeout
    # first), undid the start on both hosts, said so in one line, and nothing of it runs or
    # is listed anywhere (its keepers and servers are gone).
    failed = seen["failed_start"]
    lines = [ln for ln in failed["stderr"].splitlines() if ln.strip()]
    assert failed["rc"] == 6, failed
    assert len(lines) == 1, failed["stderr"]
    assert "cluster start failed: " in lines[0], lines
    assert "did not finish starting" in lines[0] or "failed to start" in lines[0], lines
    assert "stopped and removed" in lines[0], lines
    assert failed["pids"], "the hosts recorded the start's processes before the undo"
    assert failed["driver_rows"] == [], failed
    assert failed["a_rows"] == [], failed
    assert failed["b_rows"] == [], failed

    # 4 instances spread 2 + 2, each bound to its host's address with a password.
    started = seen["started"]
    assert len(started) == 4
    assert all(i["status"] == "running" and i["owner"] == "cluster" for i in started)
    assert all(i["auth"] is True for i in started)
    per_host = Counter(len(h["instances"]) for h in seen["cluster_ls"]["hosts"])
    assert per_host == {2: 2}
    assert seen["status"]["pid"], seen["status"]  # read on its host by the agent
    assert seen["logs"], "logs come through the owning agent"

    # A batch of 12 over both hosts: every task completed once.
    batch = seen["batch"]
    assert [t["status"] for t in batch["tasks"]] == ["completed"] * 12
    assert len({t["instance"] for t in batch["tasks"]}) == 4

    # stop and restart go through the owning agent.
    one = started[0]["name"]
    assert [r["name"] for r in seen["stopped"]] == [one]
    assert {i["name"]: i["status"] for i in seen["ls_stopped"]}[one] == "stopped"
    (again,) = seen["restarted"]
    assert again["status"] == "running"
    assert again["url"]

    # The agent killed on host B is recreated and adopts B's two instances, same PIDs.
    after = {h["node_id"]: h for h in seen["after_agent_kill"]["hosts"]}
    recreated = [h for h in after.values() if h["agent"] == "recreated"]
    assert len(recreated) == 1
    assert sorted(recreated[0]["adopted"]) == seen["b_names"]
    assert all(i["status"] == "running" for i in seen["b_servers"])

    # Host B lost mid-batch: its unfinished tasks finished on host A, each exactly once.
    moved = seen["moved_batch"]
    assert seen["moved_batch_rc"] == 0, moved
    tasks = moved["tasks"]
    assert sorted(t["id"] for t in tasks) == [f"m{i}" for i in range(8)]
    assert [t["status"] for t in tasks] == ["completed"] * 8
    # What B finished before it was lost stays B's; nothing B had unfinished ends there. On a
    # loaded machine one of B's first turns may end before the loss is staged.
    on_b = [t for t in tasks if t["instance"] in seen["b_names"]]
    assert all(t["finished_at"] <= seen["lost_at"] for t in on_b), (on_b, seen["lost_at"])
    resent = [text for text, n in Counter(seen["sent"]).items() if n > 1]
    assert resent, seen["sent"]  # B's turns in flight at the loss were sent again, on A
    assert sorted(seen["after_loss"]["lost"]) == seen["b_names"]
    lost = {i["name"]: i for i in seen["ls_after_loss"] if i["name"] in seen["b_names"]}
    assert {i["status"] for i in lost.values()} == {"crashed"}

    # Teardown stopped host A's instances through its agent.
    down = seen["down"]
    assert sum(len(h["instances"]) for h in down["hosts"]) == 2
    if "local_batch_completed" in seen:  # the baseline, with OCM_TEST_RAY_FIGURES=1
        assert seen["local_batch_completed"] == 12
    # The figures docs/scale-out.md reports (printed with -s; never asserted on).
    print({k: v for k, v in seen.items() if k.endswith("_s")})
    print("failed start:", failed["stderr"].strip())
