"""Human and machine output: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import InstanceInfo, Status

# Pipes get full lines instead of rich's 80-column default, so scripts can parse tables.
out = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_STYLE = {
    Status.RUNNING: "green",
    Status.STARTING: "cyan",
    Status.STOPPING: "cyan",
    Status.UNHEALTHY: "yellow",
    Status.STOPPED: "dim",
    Status.CRASHED: "red",
    Status.ERRORED: "bold red",
    Status.FOREIGN: "magenta",
}


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit in ("B", "KiB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"


def status_text(
    status: Status, supervised: bool | None = None, answering: bool | None = None
) -> Text:
    label = status.value
    if supervised is False:
        label += " (no keeper)"
    elif answering is False:
        label += " (keeper not answering)"
    return Text(label, style=STATUS_STYLE.get(status, ""))


def instances_table(infos: Sequence[InstanceInfo]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in (
        "NAME",
        "STATUS",
        "PID",
        "URL",
        "VERSION",
        "UPTIME",
        "RESTARTS",
        "CPU",
        "MEM",
        "AUTH",
    ):
        table.add_column(
            column,
            no_wrap=True,
            justify="right" if column in ("PID", "RESTARTS", "CPU", "MEM") else "left",
        )
    for info in infos:
        table.add_row(
            info.name,
            status_text(info.status, info.supervised, info.keeper_answering),
            str(info.pid) if info.pid else "-",
            info.url or "-",
            info.version or "-",
            human_duration(info.uptime_s),
            str(info.restarts) if info.managed else "-",
            f"{info.cpu_percent:.0f}%" if info.cpu_percent is not None else "-",
            human_bytes(info.rss_bytes),
            {True: "password", False: "none", None: "?"}[info.auth],
        )
    return table


def ago(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return human_duration(time.time() - timestamp) + " ago"
