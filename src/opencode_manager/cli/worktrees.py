"""`ocm worktrees` and `ocm worktree rm`: the git worktrees of tasks run with --worktree.

`ocm worktrees` reads the store through `fronts.Records` (no facade; rich only for a table).
"""

from __future__ import annotations

import time

import click

from .. import ConflictError
from ..fronts import human_duration, parse_duration
from .main import Context
from .options import complete_tasks
from .plain import PlainColumn, say, table
from .selection import json_fields_option, print_selected

pass_state = click.make_pass_decorator(Context)
EXIT_CONFLICT = ConflictError.exit_code


@click.command(name="worktrees")
@json_fields_option
@pass_state
def worktrees(state: Context, as_json: str | None) -> None:
    """List the worktrees of tasks run with --worktree: task, branch, status, age, files.

    \b
    Examples:
      ocm worktrees
      ocm worktrees --json | jq -r '.[].branch'
    """
    rows = state.records().worktrees()
    if as_json:
        print_selected([r.to_dict() for r in rows], as_json)
        return
    if not rows:
        say("no worktrees; `ocm run --worktree` makes one per task")
        return
    now = time.time()
    cells = [
        [
            r.task,
            r.status,
            r.branch,
            str(r.files),
            human_duration(now - r.created_at),
            r.path if r.present else "(removed)",
        ]
        for r in rows
    ]
    headers = ("TASK", "STATUS", "BRANCH", "FILES", "AGE", "WORKTREE")
    if table([PlainColumn(h, right=h == "FILES") for h in headers], cells):  # a pipe: no rich
        return
    from rich.text import Text

    from .output import TASK_STYLE, Cell, Column, fitted_table, out, table_width

    columns = (
        Column("TASK"),
        Column("STATUS"),
        Column("BRANCH"),
        Column("FILES", right=True, drop=2),
        Column("AGE", drop=3),
        Column("WORKTREE", drop=1, fold=True),  # folded before anything is left out
    )
    styled: list[list[Cell]] = [
        [line[0], Text(r.status, style=TASK_STYLE.get(r.status, "")), *line[2:]]
        for r, line in zip(rows, cells, strict=True)
    ]
    out.print(fitted_table(columns, styled, table_width()))


@click.group(name="worktree")
def worktree() -> None:
    """Act on task worktrees (see `ocm worktrees`)."""


@worktree.command(name="rm")
@click.argument("task_ids", nargs=-1, metavar="TASK_ID...", shell_complete=complete_tasks)
@click.option(
    "--merged",
    is_flag=True,
    help="Those whose branch has commits of its own, merged into the repo's HEAD.",
)
@click.option("--older-than", "older_than", metavar="DUR", help="Those older than this (7d).")
@click.option("--force", is_flag=True, help="Remove them even with uncommitted changes.")
@json_fields_option
@pass_state
def rm(
    state: Context,
    task_ids: tuple[str, ...],
    merged: bool,
    older_than: str | None,
    force: bool,
    as_json: str | None,
) -> int:
    """Remove task worktrees; their branches, holding the agents' commits, stay.

    A running task's worktree is never removed, nor, without --force, one with uncommitted
    changes (a --no-commit task's work waits there): it is kept and the reason printed.
    Exit code 4 when a worktree named by task id was kept.

    \b
    Examples:
      ocm worktree rm t-1a2b3c4d5e
      ocm worktree rm --merged
      ocm worktree rm --older-than 7d
    """
    done = state.manager().worktree_remove(
        list(task_ids),
        merged=merged,
        older_than=parse_duration(older_than) if older_than else None,
        force=force,
    )
    if as_json:
        print_selected(done.to_dict(), as_json)
    else:
        from .output import err, out

        for task_id in done.removed:
            out.print(f"removed the worktree of {task_id}", markup=False)
        for kept in done.kept:
            err.print(f"kept the worktree of {kept.task}: {kept.reason}", markup=False)
        if not done.removed and not done.kept:
            err.print("no worktree to remove", markup=False)
    named = set(task_ids)
    return EXIT_CONFLICT if any(k.task in named for k in done.kept) else 0
