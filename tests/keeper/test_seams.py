"""The keeper's real Host seam against real processes (no OpenCode): which of its
descendants are its orphans."""

from __future__ import annotations

import sys
from pathlib import Path

from opencode_manager.instances.launch import MARK_VARIABLE as MARK
from opencode_manager.keeper.seams import OwnProcess
from opencode_manager.models import KEEPER_CMD
from opencode_manager.process import spared

from helpers import fake_keeper_package, kill_trees, spawn_sleeper


def test_other_instances_under_a_keeper_are_not_its_orphans(tmp_path: Path) -> None:
    """An agent's `ocm start b` leaves b's keeper re-parented to our keeper (the nearest
    subreaper): b's keeper, b's server and their children are not ours to end (issue 23)."""
    ours, theirs = {MARK: "a:t0k3n"}, {MARK: "b:0th3r"}
    server = spawn_sleeper(env=ours)
    orphan = spawn_sleeper(env=ours)  # a bash-tool command whose server exited
    other_keeper = spawn_sleeper(
        [sys.executable, "-m", KEEPER_CMD, "--home", str(tmp_path), "--detach", "b"],
        env=theirs, cwd=fake_keeper_package(tmp_path),
    )  # fmt: skip
    other_server = spawn_sleeper(env=theirs)  # b's server, after b's keeper died
    spawned = [server, orphan, other_keeper, other_server]
    try:
        mine = {p.pid for p in spawned} | {c.pid for p in spawned for c in p.children()}
        host = OwnProcess(spared(MARK, ours[MARK]))
        found = {p.pid for p in host.orphans(server.pid)} & mine
        assert found == {orphan.pid, *(c.pid for c in orphan.children())}
        after_crash = {p.pid for p in host.orphans(None)} & mine
        assert after_crash == found | {server.pid, *(c.pid for c in server.children())}
    finally:
        kill_trees(spawned)
