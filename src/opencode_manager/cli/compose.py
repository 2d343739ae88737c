"""`ocm diff`, `ocm up`, `ocm down`: the fleet described in a fleet file (ocm.toml)."""

from __future__ import annotations

import asyncio

import click
from rich.text import Text

from .. import AsyncManager, FleetChange, Limit, StopResult, UpReport
from .loops import run_with_cancel
from .main import Context
from .output import Cell, Column, err, fitted_table, out, table_width
from .selection import json_fields_option, print_selected

pass_state = click.make_pass_decorator(Context)
file_option = click.option(
    "-f", "--file", "path", metavar="FILE", help="The fleet file (default: ./ocm.toml)."
)
STYLE = {"create": "green", "recreate": "yellow", "start": "cyan", "unchanged": "dim",
         "orphan": "magenta", "conflict": "red"}  # fmt: skip
COLUMNS = (Column("INSTANCE"), Column("ACTION"), Column("WHY", drop=1))


def _show(report: UpReport, *, title: str) -> None:
    cells: list[list[Cell]] = [
        [c.name, Text(c.action.value, style=STYLE.get(c.action.value, "")), _why(c)]
        for c in report.changes
    ]
    err.print(f"{title} {report.project}", markup=False)
    if cells:
        out.print(fitted_table(COLUMNS, cells, table_width()))
    elif not report.limits:
        err.print("the fleet file describes no instances", markup=False)
    for change in report.limits:
        was = "new" if change.before is None else f"was {_caps(change.before)}"
        out.print(Text(f"limit {change.limit.scope}: {_caps(change.limit)} ({was})", style="cyan"))


def _caps(limit: Limit) -> str:
    pairs = (("concurrency", limit.concurrency), ("rpm", limit.rpm))
    return ", ".join(f"{name} {value}" for name, value in pairs if value)


def _why(change: FleetChange) -> str:
    return change.reason or ""


@click.command(name="diff")
@file_option
@click.option("--force-recreate", is_flag=True, help="Show every instance as recreated.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when `ocm up` would change anything.")
@json_fields_option
@pass_state
def diff(
    state: Context, path: str | None, force_recreate: bool, exit_code: bool, as_json: str | None
) -> int:
    """Compare the fleet file with what runs: create, recreate (with the changed keys),
    start, unchanged, orphan (this project's, gone from the file), conflict (the name is
    taken by an instance the file did not create).

    \b
    Examples:
      ocm diff
      ocm diff -f fleets/ci.toml --json
    """
    report = state.manager().fleet_diff(path, force_recreate=force_recreate)
    if as_json:
        print_selected(report.to_dict(), as_json)
    else:
        _show(report, title="project")
    changes = any(c.action.value != "unchanged" for c in report.changes) or bool(report.limits)
    return 1 if exit_code and changes else 0


@click.command(name="up")
@file_option
@click.option("--no-recreate", is_flag=True, help="Leave changed instances as they are.")
@click.option("--force-recreate", is_flag=True, help="Recreate every instance, changed or not.")
@click.option(
    "--remove-orphans",
    is_flag=True,
    help="Stop and remove this project's instances that the file no longer has.",
)
@json_fields_option
@pass_state
def up(
    state: Context,
    path: str | None,
    no_recreate: bool,
    force_recreate: bool,
    remove_orphans: bool,
    as_json: str | None,
) -> None:
    """Converge the fleet to the fleet file: start what is missing (in parallel), recreate
    what changed (one at a time, so a group is never all down). Only instances created from
    this file's project are ever touched; a second `ocm up` does nothing. Ctrl-C stops
    what this run started (and removes what it created), says so in one line and exits 130.

    \b
    Examples:
      ocm up
      ocm up -f ocm.toml --remove-orphans
    """

    async def go(aio: AsyncManager, cancel: asyncio.Event) -> UpReport:
        return await aio.up(
            path, recreate=not no_recreate, force_recreate=force_recreate,
            remove_orphans=remove_orphans, cancel=cancel,
        )  # fmt: skip

    report = run_with_cancel(state, go)
    if as_json:
        print_selected(report.to_dict(), as_json)
        return
    _show(report, title="project")
    if report.done:
        err.print(f"done: {', '.join(report.done)}", markup=False)
    elif not report.limits:
        err.print("nothing to do", markup=False)


@click.command(name="down")
@file_option
@json_fields_option
@pass_state
def down(state: Context, path: str | None, as_json: str | None) -> None:
    """Stop every instance this fleet file's project created (`ocm up` starts them again).
    Ctrl-C stops no more of them, says which still run and exits 130.

    \b
    Examples:
      ocm down
    """

    async def go(aio: AsyncManager, cancel: asyncio.Event) -> list[StopResult]:
        return await aio.down(path, cancel=cancel)

    stopped = run_with_cancel(state, go)
    if as_json:
        print_selected([s.to_dict() for s in stopped], as_json)
        return
    for result in stopped:
        out.print(f"stopped {result.name}", markup=False)
    if not stopped:
        err.print("nothing of this project is running", markup=False)
