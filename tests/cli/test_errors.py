"""Bad input: one line on stderr, a documented code, no traceback (through `cli.main` in this
process; tests/cli/test_entry_point.py pins the same contract on a process of its own).

None of these starts a server: they must all fail before anything is spawned, so none needs
OpenCode (a stand-in that only answers `--version` gets `start` past the binary check).
"""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import pytest

from opencode_manager.models import InstanceSpec, State
from opencode_manager.registry import Registry
from opencode_manager.settings import PINNED_OPENCODE_VERSION

from helpers import Ocm, assert_one_line_error, forge_row


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `opencode` that only says its version: enough for `start` to reach the registry,
    never enough to serve (a test that got that far would fail on it)."""
    fake = tmp_path / "stand-in" / "opencode"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho {PINNED_OPENCODE_VERSION}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("OCM_OPENCODE", str(fake))
    return fake


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["status", "nope"], 3, "no instance named 'nope'"),
        (["session", "reply", "ses_x", "per_y", "sometimes"], 2, "Invalid value for 'REPLY'"),
        (["stop", "nope"], 3, "no instance named 'nope'"),
        (["env", "nope"], 3, "no instance named 'nope'"),
        (["logs", "nope"], 3, "no instance named 'nope'"),
        (["status", "1"], 3, "no instance on port 1"),
        (["status", "http://127.0.0.1:1"], 3, "no instance on port 1"),
        (["start", "--port", "-1"], 2, "invalid port -1"),
        (["start", "--port", "70000"], 2, "invalid port 70000"),
        (["start", "--port", "abc"], 2, "invalid port 'abc'"),
        (["start", "--port-range", "5000-4000"], 2, "start is above end"),
        (["start", "-n", "0"], 2, "invalid -n 0"),
        (["start", "--hostname", "0.0.0.0", "--no-auth"], 2, "refusing --no-auth on 0.0.0.0"),
        (["start", "--env", "FOO"], 2, "invalid --env 'FOO': expected KEY=VALUE"),
        (["start", "--dir", "/definitely/missing"], 2, "no such directory"),
        (["start", "Bad Name"], 2, "invalid instance name"),
        (["start", "--timeout", "0"], 2, "invalid --timeout"),
        (["start", "--log-level", "LOUD"], 2, "--log-level"),
        (["stop"], 2, "--all"),
        (["stop", "--all", "x"], 2, "not both"),
        (["restart"], 2, "or --all"),
        (["restart", "--all", "x"], 2, "not both"),
        (["stop", "--all", "--timeout", "-1"], 2, "invalid --timeout"),
        (["cleanup", "--older-than", "soon"], 2, "invalid duration"),
        (["logs", "x", "--grep", "("], 2, "invalid --grep"),
        (["install", "--version", "latest"], 2, "invalid version"),
        (["frobnicate"], 2, "No such command"),
        (["strat"], 2, "No such command 'strat'. Did you mean 'start'"),
        (["lss"], 2, "Did you mean 'ls'?"),
        (["batch", "lss"], 2, "cannot read lss"),  # a file name there: not a typo to guess
    ],
)
def test_bad_input(ocm: Ocm, args: list[str], code: int, needle: str) -> None:
    assert_one_line_error(ocm(*args), code, needle)


def _add_record(name: str, state: State) -> None:
    reg = Registry(Path(os.environ["OCM_HOME"]) / "registry.db")
    with reg.transaction() as db:
        reg.reserve(db, InstanceSpec(name=name, dir="/"), port=None)
    forge_row(reg, name, state=state)
    reg.close()


@pytest.mark.usefixtures("stand_in")
def test_duplicate_name(ocm: Ocm) -> None:
    _add_record("taken", State.STOPPED)
    result = ocm("start", "taken")
    assert_one_line_error(result, 4, "'taken' already exists")
    assert "`ocm restart taken` starts it again" in result.stderr


def test_stop_of_a_stopped_instance(ocm: Ocm) -> None:
    _add_record("idle", State.STOPPED)
    shown = ocm("status", "idle")
    assert shown.returncode == 1, str(shown)  # the report, and "not running" for scripts
    assert "stopped" in shown.stdout
    assert_one_line_error(ocm("stop", "idle"), 4, "idle is not running (stopped)")
    assert_one_line_error(ocm("api", "idle", "GET", "/path"), 4, "idle is not running")


def test_a_record_that_says_running_for_a_dead_server_is_not_called_running(ocm: Ocm) -> None:
    _add_record("ghost", State.RUNNING)
    assert_one_line_error(
        ocm("stop", "ghost"), 4, "ghost is not running (crashed: its processes are gone)"
    )


def test_contradictory_run_flags_are_usage_errors(ocm: Ocm) -> None:
    assert_one_line_error(ocm("run", "--async", "--format", "json", "hi"), 2, "choose one")
    assert_one_line_error(ocm("run", "--json", "--format", "json", "hi"), 2, "choose one")


def test_missing_binary(ocm: Ocm, tmp_path: Path) -> None:
    assert_one_line_error(
        ocm("start", env={"OCM_OPENCODE": "/no/such/opencode"}), 5, "does not exist"
    )
    nowhere = {"OCM_OPENCODE": "", "PATH": str(tmp_path / "empty") + ":/usr/bin:/bin"}
    assert_one_line_error(ocm("start", env=nowhere), 5, "run `ocm install`")


def test_too_old_binary(ocm: Ocm, tmp_path: Path) -> None:
    fake = tmp_path / "opencode"
    fake.write_text("#!/bin/sh\necho 1.1.38\n")
    fake.chmod(0o755)
    result = ocm("start", env={"OCM_OPENCODE": str(fake)})
    assert_one_line_error(result, 5, "opencode 1.1.38", "too old", ">= 1.1.39")


def test_unwritable_ocm_home(ocm: Ocm, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = ocm("ls", env={"OCM_HOME": str(blocker / "state")})
    assert_one_line_error(result, 7, "is not writable")
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert_one_line_error(ocm("ls", env={"OCM_HOME": str(ro / "x")}), 7, "not writable")


@pytest.mark.usefixtures("stand_in")
def test_corrupt_registry_is_reported_not_overwritten(ocm: Ocm) -> None:
    path = Path(os.environ["OCM_HOME"]) / "registry.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    garbage = b"\x00garbage, not sqlite\n" * 512
    path.write_bytes(garbage)
    for args in (["ls"], ["start", "x"], ["stop", "--all"], ["doctor", "--json"]):
        result = ocm(*args)
        if args[0] == "doctor":
            assert result.returncode == 1
            assert "corrupt" in result.stdout
            continue
        assert_one_line_error(result, 7, "is corrupt", "left untouched")
    assert path.read_bytes() == garbage
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(path).execute("SELECT 1 FROM sqlite_master").fetchall()


@pytest.mark.parametrize(
    "args", [["metrics", "--serve", "{port}"], ["model-server", "--port", "{port}"]]
)
def test_a_busy_port_is_a_conflict_before_anything_says_serving(ocm: Ocm, args: list[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = ocm(*(a.format(port=port) for a in args), timeout=30)
    assert_one_line_error(result, 4, f"port {port} is in use on 127.0.0.1")
    assert "serving" not in result.stderr
    assert "listening" not in result.stdout


def test_a_batch_is_checked_whole_before_anything_is_recorded(ocm: Ocm, tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "hi"}\n')
    missing_dir = tmp_path / "dirs.jsonl"
    missing_dir.write_text('{"prompt": "a"}\n\n{"prompt": "b", "dir": "/definitely/missing"}\n')
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"prompt": "a"}\n{"prompt": "\xff\xfe"}\n')
    nul = tmp_path / "nul.jsonl"
    nul.write_bytes(b'{"prompt": "a"}\n\n\x00\x01\x02')
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a directory")
    cases = [
        (["batch", str(missing_dir)], f"{missing_dir}:3: no such directory /definitely/missing"),
        (["batch", str(binary)], f"{binary}:2: not UTF-8 text (byte 0xff)"),
        (["batch", str(nul)], f"{nul}:3: a NUL byte"),
        (["batch", str(good), "--out", str(a_file)], "exists and is not a directory"),
        (["batch", str(good), "--out", str(a_file / "sub")], "is not a writable directory"),
    ]
    for args, needle in cases:
        assert_one_line_error(ocm(*args), 2, needle)
    assert a_file.read_text() == "not a directory"
    listed = ocm("batch", "ls", "--json")
    assert listed.returncode == 0, str(listed)
    assert listed.json() == []  # nothing was recorded


def _seed_results(count: int) -> None:
    from opencode_manager.models import TaskRecord, TaskStatus
    from opencode_manager.tasks.store import TaskStore

    home = Path(os.environ["OCM_HOME"])
    home.mkdir(mode=0o700, exist_ok=True)
    store = TaskStore(Registry(home / "registry.db"))
    for i in range(count):
        record = TaskRecord(id=f"t-{i:03d}", prompt=f"p{i}", status=TaskStatus.COMPLETED,
                            created_at=1000.0 + i)  # fmt: skip
        record.finished_at = 1000.5 + i
        store.add(record)
    store.registry.close()


def test_results_are_limited_by_default_and_pruned_on_request(ocm: Ocm) -> None:
    _seed_results(60)
    shown = ocm("results", "--json")
    assert shown.returncode == 0, str(shown)
    assert [r["id"] for r in shown.json()] == [f"t-{i:03d}" for i in range(10, 60)]
    assert "the newest 50 of 60 results; --all shows every one" in shown.stderr
    assert len(ocm("results", "--all", "--json", check=True).json()) == 60
    assert len(ocm("results", "--limit", "3", "--json", check=True).json()) == 3
    assert_one_line_error(ocm("results", "--all", "--limit", "3"), 2, "contradict")
    assert_one_line_error(ocm("results", "--json", "--jsonl"), 2, "contradict")
    assert_one_line_error(ocm("results", "--batch", "b-nope"), 3, "no batch 'b-nope'")
    dry = ocm("results", "prune", "--older-than", "1d", "--dry-run", "--json", check=True)
    assert dry.json() == {"batches": [], "tasks": 60, "dry_run": True}
    assert len(ocm("results", "--all", "--json", check=True).json()) == 60
    pruned = ocm("results", "prune", "--older-than", "1d", check=True)
    assert pruned.stdout.strip() == "deleted 60 results (0 batches)"
    assert ocm("results", "--json", check=True).json() == []
    assert_one_line_error(ocm("results", "prune"), 2, "--older-than")
    assert_one_line_error(ocm("batch", "rm", "b-nope"), 3, "no batch 'b-nope'")


def test_resuming_a_cancelled_batch_is_refused_with_what_did_not_finish(ocm: Ocm) -> None:
    from opencode_manager.models import BatchStatus, TaskRecord, TaskStatus
    from opencode_manager.tasks.store import Batch, TaskStore

    home = Path(os.environ["OCM_HOME"])
    home.mkdir(mode=0o700, exist_ok=True)
    store = TaskStore(Registry(home / "registry.db"))
    tasks = [
        TaskRecord(id=f"t-{i}", prompt="p", status=status, created_at=1.0, batch_id="b-c")
        for i, status in enumerate([TaskStatus.COMPLETED, *[TaskStatus.CANCELLED] * 3])
    ]
    store.add_batch(
        Batch(id="b-c", status=BatchStatus.CANCELLED, created_at=1.0, updated_at=1.0), tasks
    )
    store.registry.close()
    assert_one_line_error(
        ocm("batch", "resume", "b-c"), 4,
        "batch b-c is cancelled (3 of its tasks did not finish); "
        "`ocm batch resume b-c --requeue-cancelled` runs them",
    )  # fmt: skip
    shown = ocm("batch", "show", "b-c", "--json", check=True).json()
    assert shown["status"] == "cancelled"  # never relabelled
    assert shown["counts"] == {"completed": 1, "cancelled": 3}


def test_turn_2s_unclear_messages_say_what_is_wrong(ocm: Ocm, tmp_path: Path) -> None:
    """Issue 26: each names the culprit and what to do instead of restating a rule."""
    assert_one_line_error(ocm("start", "café"), 2, "'é' is not allowed", "ASCII letters")
    assert_one_line_error(ocm("start", "1web"), 2, "it must start with a letter")
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"prompt": 5}\n')
    assert_one_line_error(ocm("batch", str(batch)), 2, "b.jsonl:1: prompt must be a string, "
                          "not a number (5)")  # fmt: skip
    home = tmp_path / "home-file"
    home.write_text("")
    assert_one_line_error(ocm("ls", env={"OCM_HOME": str(home)}), 7, "is a file, not a directory")
    assert_one_line_error(ocm("start", env={"OCM_OPENCODE": str(tmp_path)}), 5,
                          "is a directory, not the opencode binary")  # fmt: skip


def test_cluster_errors_use_the_readme_s_exit_codes(ocm: Ocm) -> None:
    """No cluster yet is not found (3); a Ray head that does not answer is a server that
    did not answer (8), as the README's table has them (issue 26: they were 2 and 4)."""
    pytest.importorskip("ray")
    assert_one_line_error(ocm("cluster", "ls"), 3, "no cluster yet")
    assert_one_line_error(ocm("cluster", "up", "--address", "127.0.0.1:1"), 8, "nothing answers")
