"""Human and machine output: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

from .. import InstanceInfo, Status
from ..fronts import ago as ago  # the commands that print with rich take it from here
from ..fronts import human_duration as human_duration
from ..fronts import human_size, one_line


def stdout_console() -> Console:
    """Pipes get full lines instead of rich's 80-column default, so scripts can parse tables."""
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 250)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


# Made once, at import (as rich reads the stream and the environment then); the in-process
# test runner makes fresh ones per call from the two functions above.
out = stdout_console()
err = stderr_console()

STATUS_STYLE = {
    Status.RUNNING: "green",
    Status.STARTING: "cyan",
    Status.STOPPING: "cyan",
    Status.UNHEALTHY: "yellow",
    Status.STOPPED: "dim",
    Status.CRASHED: "red",
    Status.ERRORED: "bold red",
    Status.FOREIGN: "magenta",
    Status.UNREACHABLE: "red",
}
TASK_STYLE = {
    "completed": "green",
    "failed": "red",
    "timed_out": "yellow",
    "budget_exceeded": "yellow",
    "aborted": "yellow",
    "cancelled": "dim",
    "running": "cyan",
    "queued": "blue",
    "pending": "dim",
}


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def human_bytes(value: int | None) -> str:
    return human_size(value)


def status_text(
    status: Status,
    supervised: bool | None = None,
    answering: bool | None = None,
    service: bool = False,
) -> Text:
    label = status.value
    if service:
        label += " (service)"  # the user's OpenCode 2 background service
    elif supervised is False:
        label += " (no keeper)"
    elif answering is False:
        label += " (keeper not answering)"
    return Text(label, style=STATUS_STYLE.get(status, ""))


@dataclass(frozen=True)
class Column:
    """A table column; under a narrow terminal a `fold` column is narrowed first, its cells
    folded over lines (a path: long, and all of it matters), then the highest `drop` goes
    (0: never)."""

    header: str
    right: bool = False
    drop: int = 0
    fold: bool = False


Cell = str | Text

#: The narrowest a fold column gets before columns are dropped instead.
FOLD_MIN = 16


def fitted_table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> Table:
    """A table that fits `width` columns of terminal without cutting a cell: a `fold` column
    is narrowed (its cells folded, never cut), then low-value columns are left out whole
    (like `kubectl get` or `docker ps`), never truncated."""
    keep = list(range(len(columns)))

    def natural(i: int) -> int:
        return max([len(columns[i].header), *(cell_len(row[i]) for row in rows)])

    def least(i: int) -> int:
        return (
            min(natural(i), max(FOLD_MIN, len(columns[i].header)))
            if columns[i].fold
            else natural(i)
        )

    def needed(indexes: list[int]) -> int:
        return sum(least(i) for i in indexes) + 2 * (len(indexes) - 1)

    for i in sorted(range(len(columns)), key=lambda i: -columns[i].drop):
        if needed(keep) <= width or columns[i].drop == 0:
            break
        keep.remove(i)
    # What is left over goes to the fold columns, shared evenly.
    folds = [i for i in keep if columns[i].fold]
    room = width - needed([i for i in keep if not columns[i].fold]) - 2 * len(folds)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i in keep:
        column = columns[i]
        justify: JustifyMethod = "right" if column.right else "left"
        if column.fold and folds:
            fits = max(least(i), room // len(folds))
            table.add_column(
                column.header, justify=justify, overflow="fold", no_wrap=False,
                max_width=fits if fits < natural(i) else None,
            )  # fmt: skip
        else:
            table.add_column(column.header, no_wrap=True, justify=justify)
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


def cell_len(cell: Cell) -> int:
    return (Text(cell) if isinstance(cell, str) else cell).cell_len


def table_width() -> int:
    """The width tables must fit: the terminal's, or room for every column in a pipe."""
    return out.width


INSTANCE_COLUMNS = (
    Column("NAME"),
    Column("STATUS"),
    Column("PID", right=True),
    Column("URL"),
    Column("VERSION", drop=5),
    Column("UPTIME", drop=2),
    Column("RESTARTS", right=True, drop=3),
    Column("CPU", right=True, drop=4),
    Column("MEM", right=True, drop=1),
    Column("AUTH", drop=6),
)


def instances_table(infos: Sequence[InstanceInfo]) -> RenderableType:
    """`ocm ls`: one row per instance, then the reason of each that is in trouble."""
    rows: list[list[Cell]] = [
        [
            info.name,
            status_text(info.status, info.supervised, info.keeper_answering, info.service),
            str(info.pid) if info.pid else (info.owner if info.owner != "ocm" else "-"),
            info.url or "-",
            info.version or "-",
            human_duration(info.uptime_s),
            str(info.restarts) if info.owner == "ocm" else "-",
            f"{info.cpu_percent:.0f}%" if info.cpu_percent is not None else "-",
            human_bytes(info.rss_bytes),
            {True: "password", False: "none", None: "?"}[info.auth],
        ]
        for info in infos
    ]
    table = fitted_table(INSTANCE_COLUMNS, rows, table_width())
    reasons = [reason for info in infos if (reason := trouble(info))]
    if not reasons:
        return table
    return Group(table, Text(""), *reasons)


def trouble(info: InstanceInfo) -> Text | None:
    """Why an instance is errored, crashed or unsupervised, on a line of its own."""
    why = info.error or info.keeper_error
    if info.status in (Status.ERRORED, Status.CRASHED) and not why:
        why = info.last_exit
    if not why:
        return None
    text = Text(f"{info.name}: ", style="bold")
    text.append(f"{info.status.value}: {one_line(why)}", style=STATUS_STYLE.get(info.status, ""))
    return text
