"""Tables for people: they fit the terminal without cutting what identifies an instance."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from opencode_manager.cli.output import Column, fitted_table
from opencode_manager.fronts import one_line
from opencode_manager.models import InstanceSpec, State, TaskRecord, TaskStatus
from opencode_manager.registry import Registry
from opencode_manager.tasks.store import TaskStore

from conftest import Fleet
from helpers import run_in_terminal

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLUMNS = (
    Column("NAME"),
    Column("URL"),
    Column("EXTRA", drop=2),
    Column("MORE", drop=1),
)
ROWS = [["a-rather-long-instance-name", "http://127.0.0.1:40961", "x" * 20, "y" * 10]]


def _render(table: object, width: int) -> list[str]:
    console = Console(width=width, record=True, force_terminal=False)
    console.print(table)
    return console.export_text().splitlines()


def test_a_wide_terminal_gets_every_column() -> None:
    [header, row] = _render(fitted_table(COLUMNS, ROWS, 200), 200)
    assert header.split() == ["NAME", "URL", "EXTRA", "MORE"]
    assert row.split() == ROWS[0]


def test_a_narrow_terminal_loses_the_highest_drop_first_and_never_cuts() -> None:
    lines = _render(fitted_table(COLUMNS, ROWS, 70), 70)
    assert lines[0].split() == ["NAME", "URL", "MORE"]
    assert lines[1].split() == [ROWS[0][0], ROWS[0][1], ROWS[0][3]]
    lines = _render(fitted_table(COLUMNS, ROWS, 52), 52)
    assert lines[0].split() == ["NAME", "URL"]
    assert lines[1].split() == ROWS[0][:2]


def test_a_fold_column_narrows_before_any_column_is_dropped() -> None:
    columns = (Column("NAME"), Column("AGE", drop=2), Column("PATH", drop=1, fold=True))
    path = "/a/rather/long/path/" * 3
    lines = _render(fitted_table(columns, [["n", "1m", path]], 40), 40)
    assert lines[0].split() == ["NAME", "AGE", "PATH"]
    assert all(len(line) <= 40 for line in lines)
    start = lines[0].index("PATH")
    assert "".join(line[start:].strip() for line in lines[1:]) == path
    # Narrower than the fold column's least width: columns go, by their drop, as before.
    lines = _render(fitted_table(columns, [["n", "1m", path]], 12), 12)
    assert lines[0].split() == ["NAME"]


def test_columns_that_are_never_dropped_stay_even_when_too_wide() -> None:
    lines = _render(fitted_table(COLUMNS, ROWS, 20), 60)
    assert lines[1].split() == ROWS[0][:2]  # whole, for the terminal to wrap


def test_one_line_keeps_the_first_line_without_colour_codes() -> None:
    assert one_line("\x1b[91m\x1b[1mError: \x1b[0mbad config\n  at line 3\n") == "Error: bad config"
    assert Text(one_line("")).plain == ""


def _seed(home: Path) -> None:
    registry = Registry(home / "registry.db")
    with registry.transaction() as db:
        for name in ("a-rather-long-instance-name", "flappy"):
            registry.reserve(db, InstanceSpec(name=name, dir="/"), port=None)
    registry.mark_ended(
        "flappy", State.ERRORED, error="restarted 10 times within 60 s; not restarting",
        last_exit="exit 1",
    )  # fmt: skip
    registry.close()


def test_ls_fits_80_columns_and_says_why_an_instance_errored() -> None:
    _seed(Path(os.environ["OCM_HOME"]))
    screen = ANSI.sub("", run_in_terminal("ls", "--no-foreign"))
    lines = screen.splitlines()
    assert all(len(line) <= 80 for line in lines), screen
    assert lines[0].split()[:2] == ["NAME", "STATUS"], screen
    assert any(line.startswith("a-rather-long-instance-name ") for line in lines), screen
    assert "flappy: errored: restarted 10 times within 60 s; not restarting" in lines, screen


@pytest.mark.integration
def test_ls_and_top_at_80_columns_keep_name_status_url_and_pid(fleet: Fleet) -> None:
    screen = ANSI.sub("", run_in_terminal("ls", "--no-foreign", env=fleet.env))
    lines = screen.splitlines()
    assert all(len(line) <= 80 for line in lines), screen
    assert lines[0].split()[:4] == ["NAME", "STATUS", "PID", "URL"], screen
    for instance in fleet.instances:
        row = next(line for line in lines if line.startswith(f"{instance['name']} "))
        assert row.split()[1:4] == ["running", str(instance["pid"]), instance["url"]], screen
    screen = ANSI.sub("", run_in_terminal("top", "--once", env=fleet.env))
    lines = screen.splitlines()
    assert all(len(line) <= 80 for line in lines), screen
    for instance in fleet.instances:
        assert any(line.startswith(f"{instance['name']} ") for line in lines), screen


def test_worktrees_at_80_columns_keeps_every_column_and_folds_the_path(tmp_path: Path) -> None:
    """Issue 26: FILES and AGE were dropped at 80 columns to make room for the path; the path
    is what folds now (all of it kept, over lines), and no column is left out."""
    home = Path(os.environ["OCM_HOME"])
    tree = tmp_path / ("a-repository-with-a-long-name" + "/worktrees" * 3) / "t-0123456789"
    tree.mkdir(parents=True)
    store = TaskStore(Registry(home / "registry.db"))
    worktree = {"path": str(tree), "repository": str(tmp_path), "branch": "ocm/t-0123456789",
                "base": "abc", "files": ["a.py", "b.py"]}  # fmt: skip
    store.add(
        TaskRecord(
            id="t-0123456789",
            prompt="p",
            status=TaskStatus.COMPLETED,
            created_at=time.time() - 90,
            worktree=worktree,
        )
    )
    store.registry.close()
    screen = ANSI.sub("", run_in_terminal("worktrees"))
    lines = screen.splitlines()
    assert all(len(line) <= 80 for line in lines), screen
    assert lines[0].split() == ["TASK", "STATUS", "BRANCH", "FILES", "AGE", "WORKTREE"], screen
    assert lines[1].split()[:5] == ["t-0123456789", "completed", "ocm/t-0123456789", "2", "1m30s"]
    start = lines[0].index("WORKTREE")
    assert "".join(line[start:].strip() for line in lines[1:]) == str(tree), screen


def test_doctor_at_80_columns_folds_a_long_binary_path_and_cuts_no_line(
    opencode_bin: str, tmp_path: Path
) -> None:
    """Issue 26: the binary's path was cut with an ellipsis at 80 columns."""
    deep = tmp_path / ("a-directory-with-a-rather-long-name/" * 3) / "bin"
    deep.mkdir(parents=True)
    (deep / "opencode").symlink_to(opencode_bin)
    screen = ANSI.sub("", run_in_terminal("doctor", env={"OCM_OPENCODE": str(deep / "opencode")}))
    lines = screen.splitlines()
    assert all(len(line) <= 80 for line in lines), screen
    assert "…" not in screen, screen
    assert str(deep / "opencode") in "".join(line[14:].strip() for line in lines), screen


def test_doctor_at_80_columns_folds_a_long_path_instead_of_cutting_it(tmp_path: Path) -> None:
    home = tmp_path / ("a-long-directory-name-" * 4) / "ocm-home"
    screen = ANSI.sub("", run_in_terminal("doctor", env={"OCM_HOME": str(home)}))
    lines = screen.splitlines()
    assert all(len(line) <= 80 for line in lines), screen
    assert "…" not in screen, screen  # a path cut short is a path you cannot copy
    assert str(home) in "".join(line.strip() for line in lines), screen


@pytest.mark.integration
def test_status_at_80_columns_folds_the_server_command_instead_of_cutting_it(
    fleet: Fleet,
) -> None:
    name = str(fleet.instances[0]["name"])
    screen = ANSI.sub("", run_in_terminal("status", name, env=fleet.env))
    assert all(len(line) <= 80 for line in screen.splitlines()), screen
    assert "…" not in screen, screen


def test_resume_of_a_finished_batch_in_a_terminal_is_the_error_alone() -> None:
    from opencode_manager.models import BatchStatus, TaskRecord, TaskStatus
    from opencode_manager.tasks.store import Batch, TaskStore

    home = Path(os.environ["OCM_HOME"])
    home.mkdir(mode=0o700, exist_ok=True)
    store = TaskStore(Registry(home / "registry.db"))
    record = TaskRecord(id="t-done", prompt="p", status=TaskStatus.COMPLETED, created_at=1.0,
                        batch_id="b-done")  # fmt: skip
    store.add_batch(Batch(id="b-done", status=BatchStatus.COMPLETED, created_at=1.0,
                          updated_at=1.0), [record])  # fmt: skip
    store.registry.close()
    screen = ANSI.sub("", run_in_terminal("batch", "resume", "b-done"))
    lines = [line for line in screen.replace("\r", "\n").splitlines() if line.strip()]
    assert lines == ["ocm: error: batch b-done is completed; nothing to resume"], screen


def test_results_at_80_columns_is_one_line_a_task() -> None:
    """The walk at 80 columns: PROMPT and ANSWER were wrapped into columns of ten letters,
    a task 4-8 lines tall; a list shows one line a task, the texts cut to fit."""
    home = Path(os.environ["OCM_HOME"])
    home.mkdir(mode=0o700, exist_ok=True)
    store = TaskStore(Registry(home / "registry.db"))
    for n in range(3):
        store.add(
            TaskRecord(
                id=f"t-000000000{n}", prompt="refactor the parser so that " * 4,
                status=TaskStatus.COMPLETED, created_at=time.time() - n, instance="oc-1",
                text="I changed the parser and the tests pass now. " * 3,
            )
        )  # fmt: skip
    store.registry.close()
    screen = ANSI.sub("", run_in_terminal("results"))
    lines = [line for line in screen.splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in lines), screen
    assert len(lines) == 4, screen  # the header and one line a task
    assert "refacto" in lines[1], screen
    assert "I chang" in lines[1], screen
