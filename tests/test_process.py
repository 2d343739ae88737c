"""process.py: what needs no other process than a short-lived Python of its own."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from opencode_manager.instances.launch import MARK_VARIABLE as MARK
from opencode_manager.models import KEEPER_CMD, SERVER_CMD, ProcessIdentity
from opencode_manager.process import (
    argv_is,
    descendants,
    identity_of,
    identity_with,
    is_keeper_argv,
    is_server_argv,
    spared,
    terminate_tree,
    verified,
)

from helpers import fake_keeper_package, kill_trees, spawn_sleeper

PROBE = """
import ctypes
from opencode_manager.process import set_child_subreaper
flag = ctypes.c_int(-1)
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(37, ctypes.byref(flag), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
before = flag.value
ok = set_child_subreaper()
libc.prctl(37, ctypes.byref(flag), 0, 0, 0)
print(before, ok, flag.value)
"""


def test_a_keeper_becomes_its_descendants_subreaper() -> None:
    # In a process of its own: the test runner must not become a subreaper.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "True", "1"]


# -- what a process is: its argv, argument by argument ---------------------------------------
PY = "/usr/bin/python3"
KEEPER_ARGV = [PY, "-m", "opencode_manager.keeper", "--home", "/h", "--detach", "a"]


@pytest.mark.parametrize(
    ("argv", "keeper"),
    [
        (KEEPER_ARGV, True),
        ([PY, "-X", "dev", "-u", "-m", "opencode_manager.keeper", "a"], True),
        ([PY, "-mopencode_manager.keeper", "a"], True),
        ([PY, "-mopencode_manager.keeper.loop", "a"], False),
        ([PY, "-m", "opencode_manager.keeper.loop", "a"], False),
        ([PY, "-m", "opencode_manager", "start", "-m", "opencode_manager.keeper"], False),
        ([PY, "-c", "pass", "-m", "opencode_manager.keeper"], False),
        ([PY, "script.py", "-m", "opencode_manager.keeper"], False),
        (["less", "opencode_manager.keeper"], False),
        ([PY, "-m"], False),
        ([], False),
    ],
)
def test_a_keeper_is_python_running_the_keeper_module(argv: list[str], keeper: bool) -> None:
    assert is_keeper_argv(argv) is keeper
    assert argv_is(KEEPER_CMD, argv) is keeper


@pytest.mark.parametrize(
    ("argv", "server"),
    [
        (["/x/opencode", "serve", "--hostname", "127.0.0.1", "--port", "0"], True),
        (["/x/opencode-linux-x64/bin/opencode", "serve"], True),
        (["/bin/sh", "/tmp/wrap/opencode", "serve", "--port", "0"], True),  # a wrapper
        (["node", "/x/opencode-ai/bin/opencode", "serve"], True),  # npm's Node wrapper
        ([PY, "-m", "opencode_manager.testing.sse", "serve", "--count", "1"], True),  # a fake
        (["python3", "-m", "http.server"], False),  # issue 23: "serve" in "http.server"
        ([PY, "-m", "http.server", "--bind", "127.0.0.1", "0"], False),
        (["/x/opencode", "run", "serve"], False),  # `serve` is a prompt here
        (["/x/opencode", "serve the app"], False),
        (["/x/opencode-serve"], False),
        (["/x/opencode"], False),
        (["mkdocs", "serve"], False),
        ([PY, "-c", "import time; time.sleep(600)", "serve"], False),
        (["bash", "-c", "opencode serve"], False),
        (["/x/observer", "serve"], False),
    ],
)
def test_a_server_is_opencode_with_the_serve_subcommand(argv: list[str], server: bool) -> None:
    assert is_server_argv(argv) is server
    assert argv_is(SERVER_CMD, argv) is server


def test_any_other_identity_is_a_whole_argument() -> None:
    assert argv_is("worker", ["/bin/app", "worker", "--n", "2"])
    assert not argv_is("worker", ["/bin/app", "workers"])


def test_python_http_server_is_not_taken_for_a_server(tmp_path: Path) -> None:
    """A recorded server PID now held by `python3 -m http.server` is a stranger."""
    stranger = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    program = tmp_path / "opencode"
    program.write_text("import time\ntime.sleep(600)\n")
    server = subprocess.Popen([sys.executable, str(program), "serve", "--port", "0"])
    try:
        seen = identity_of(stranger.pid)
        assert seen is not None
        assert verified(ProcessIdentity(seen.pid, seen.create_time)) is not None  # alive
        assert verified(ProcessIdentity(seen.pid, seen.create_time, SERVER_CMD)) is None
        assert verified(identity_with(server.pid, SERVER_CMD)) is not None
    finally:
        for proc in (stranger, server):
            proc.kill()
            proc.wait()


# -- another instance's tree is never ours to end --------------------------------------------
def test_ending_a_tree_spares_other_instances_keepers_and_servers(tmp_path: Path) -> None:
    """Under a keeper hang whole other instances (their keepers are re-parented to it, the
    nearest subreaper): ending the tree leaves them, and their children, running."""
    ours, theirs = {MARK: "a:t0k3n"}, {MARK: "b:0th3r"}
    root = spawn_sleeper()  # the keeper's stand-in (a's marker, like its tools)
    own_tool = spawn_sleeper(env=ours)
    stray = spawn_sleeper(env={})  # an orphan of ours, no marker (it cleared its environment)
    other_keeper = spawn_sleeper(
        [sys.executable, "-m", KEEPER_CMD, "--home", str(tmp_path), "--detach", "b"],
        env=theirs, cwd=fake_keeper_package(tmp_path),
    )  # fmt: skip
    other_server = spawn_sleeper(env=theirs)  # b's server, orphaned after b's keeper died
    unmarked_keeper = spawn_sleeper(  # a keeper launched before keepers carried a marker
        [sys.executable, "-m", KEEPER_CMD, "c"], cwd=fake_keeper_package(tmp_path / "c")
    )
    members = [own_tool, stray, other_keeper, other_server, unmarked_keeper]
    try:
        spare = spared(MARK, ours[MARK])
        assert [spare(p) for p in members] == [False, False, True, True, True]
        found = descendants(psutil.Process(), spare=spare)
        pids = {p.pid for p in found}
        assert {own_tool.pid, stray.pid} <= pids
        assert not {p.pid for p in _trees(other_keeper, other_server, unmarked_keeper)} & pids

        result = terminate_tree(root, timeout=5, extra=members, spare=spare)
        assert result.survivors == 0
        assert not any(p.is_running() and p.status() != "zombie" for p in _trees(root))
        assert not any(p.is_running() and p.status() != "zombie" for p in _trees(own_tool))
        for tree in (other_keeper, other_server, unmarked_keeper):
            assert all(p.is_running() for p in _trees(tree)), tree.cmdline()
        # Without a marker to go by, keepers are still spared, by their argv.
        terminate_tree(stray, timeout=5, extra=[unmarked_keeper])
        assert all(p.is_running() for p in _trees(unmarked_keeper))
    finally:
        kill_trees([root, *members])


def _trees(*roots: psutil.Process) -> list[psutil.Process]:
    found = []
    for root in roots:
        found.append(root)
        with contextlib.suppress(psutil.Error):
            found += root.children(recursive=True)
    return found
