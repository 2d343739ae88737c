"""Watching the fleet: monitor, top, metrics."""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.console import Group
from rich.live import Live
from rich.text import Text

from .. import AsyncManager, FleetFrame, Status, UsageError
from ..fronts import EventFilter, EventFolder
from .loops import stopped, watch
from .main import Context

if TYPE_CHECKING:
    from .. import Manager, QueuedTicket
from .options import complete_instances
from .output import (
    STATUS_STYLE,
    Cell,
    Column,
    err,
    fitted_table,
    human_bytes,
    human_duration,
    out,
    table_width,
)

pass_state = click.make_pass_decorator(Context)

LEVEL_STYLE = {  # EventLine.level -> style
    "info": "",
    "good": "green",
    "warn": "yellow",
    "bad": "bold red",
    "ask": "bold magenta",
    "muted": "dim",
}


@click.command()
@click.argument("refs", nargs=-1, shell_complete=complete_instances)
@click.option(
    "--type",
    "types",
    multiple=True,
    metavar="GLOB",
    help="Only events whose type matches (e.g. 'session.*'); repeatable. "
    "Heartbeats show only when asked for.",
)
@click.option("--session", "session_id", metavar="ID", help="Only this session's events.")
@click.option(
    "--follow-new",
    is_flag=True,
    help="Also watch instances started later (the default without REFs).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per event: the event plus instance and received_at.",
)
@pass_state
def monitor(
    state: Context,
    refs: tuple[str, ...],
    types: tuple[str, ...],
    session_id: str | None,
    follow_new: bool,
    as_json: bool,
) -> None:
    """One merged live stream of the events of many instances (Ctrl-C to stop).

    Reconnects by itself when an instance restarts, and then reports which sessions changed
    state while it was away (OpenCode's stream has no replay).

    \b
    Examples:
      ocm monitor                           # every running instance
      ocm monitor oc-1 --type session.error --json
    """
    chosen = EventFilter(types=tuple(types), session=session_id)
    folders: dict[str, EventFolder] = {}
    write = sys.stdout.write

    async def run(manager: AsyncManager) -> bool:
        async for item in manager.monitor(refs, follow_new=follow_new):
            if not chosen.accepts(item.event):
                continue
            if as_json:
                write(json.dumps(item.to_dict()) + "\n")
            else:
                folder = folders.setdefault(item.instance, EventFolder(verbose=bool(types)))
                line = folder.line(item.event)
                if line is None:
                    continue
                stamp = time.strftime("%H:%M:%S", time.localtime(item.received_at))
                text = Text(f"{stamp} ", style="dim")
                text.append(f"{item.instance:<10} ", style="cyan")
                if line.session:
                    text.append(f"{line.session} ", style="dim")
                text.append(line.text, style=LEVEL_STYLE[line.level])
                out.print(text, soft_wrap=True)
            sys.stdout.flush()
        return True

    if watch(state, run) is None:  # Ctrl-C
        raise stopped("monitor", "watching events")


TOP_COLUMNS = (
    Column("NAME"),
    Column("STATUS"),
    Column("VERSION", drop=7),
    Column("UPTIME", drop=4),
    Column("RESTARTS", right=True, drop=3),
    Column("CPU", right=True, drop=1),
    Column("MEM", right=True, drop=1),
    Column("CONNS", right=True, drop=6),
    Column("BUSY", right=True),
    Column("IDLE", right=True, drop=5),
    Column("LAST EVENT", drop=2),
)


def _top_table(frame: FleetFrame, queue: Sequence[QueuedTicket] = ()) -> Group:
    rows: list[list[Cell]] = []
    for row in frame.instances:
        last = row.last_event
        rows.append(
            [
                row.name,
                Text(row.status, style=STATUS_STYLE.get(Status(row.status), "")),
                row.version or "-",
                human_duration(row.uptime_s),
                str(row.restarts),
                f"{row.cpu_percent:.0f}%" if row.cpu_percent is not None else "-",
                human_bytes(row.rss_bytes),
                str(row.connections) if row.connections is not None else "-",
                str(row.busy) if row.busy is not None else "-",
                str(row.idle) if row.idle is not None else "-",
                f"{last.kind} {human_duration(time.time() - last.time)} ago" if last else "-",
            ]
        )
    table = fitted_table(TOP_COLUMNS, rows, table_width())
    totals = frame.totals
    summary = Text(
        f"{totals.instances} instances, {totals.running} running; "
        f"CPU {totals.cpu_percent:.0f}%, RSS {human_bytes(totals.rss_bytes)}, "
        f"{totals.busy} busy / {totals.sessions} sessions",
        style="bold",
    )
    if queue:
        return Group(summary, table, _queue_text(queue))
    return Group(summary, table)


def _frame(manager: Manager) -> dict[str, Any]:
    """A `top` frame as JSON: the fleet, and the tasks queued for a provider slot."""
    return {**manager.top().to_dict(), "queue": [q.to_dict() for q in manager.queue()]}


def _queue_text(queue: Sequence[QueuedTicket]) -> Text:
    """The tasks waiting for a slot of their provider (`ocm limits`), in queue order."""
    lines = [f"{len(queue)} queued for a provider slot:"]
    for ticket in queue[:10]:
        lines.append(f"  #{ticket.place} {ticket.owner} on {ticket.model or ticket.provider}"
                     f" (priority {ticket.priority}, {ticket.waited_s:.0f} s)")  # fmt: skip
    if len(queue) > 10:
        lines.append(f"  ... and {len(queue) - 10} more")
    return Text("\n".join(lines))


@click.command()
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts and tests).")
@click.option(
    "--interval",
    type=float,
    default=1.0,
    show_default=True,
    metavar="S",
    help="Seconds between refreshes.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Frames as JSON: one (indented) with --once, else one per line every interval.",
)
@pass_state
def top(state: Context, once: bool, interval: float, as_json: bool) -> None:
    """A live view of the fleet: status, CPU, memory, sessions, last event (q quits).

    \b
    Examples:
      ocm top
      ocm top --once --json
      ocm top --json --interval 5 | jq -c .totals   # a frame a line, to Ctrl-C
    """
    if interval < 0.2:
        raise UsageError(f"invalid --interval {interval:g}: at least 0.2 s")
    manager = state.manager()
    if as_json and not once:
        try:
            while True:
                started = time.monotonic()
                sys.stdout.write(json.dumps(_frame(manager), default=str) + "\n")
                sys.stdout.flush()
                # The next frame is due one interval after this one began (a pacing wait).
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        except BrokenPipeError:
            return
        except KeyboardInterrupt:
            raise stopped("top", "watching") from None
    if once:
        if as_json:
            sys.stdout.write(json.dumps(_frame(manager), indent=2, default=str) + "\n")
        else:
            out.print(_top_table(manager.top(), manager.queue()))
        return
    if not sys.stdin.isatty():
        raise UsageError("ocm top needs a terminal; use `ocm top --once` in scripts")
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        first = _top_table(manager.top(), manager.queue())
        with Live(first, console=out, screen=False, auto_refresh=False) as live:
            while True:
                ready, _, _ = select.select([sys.stdin], [], [], interval)
                if ready and os.read(fd, 32).strip().lower().startswith(b"q"):
                    break
                live.update(_top_table(manager.top(), manager.queue()), refresh=True)
    except KeyboardInterrupt:
        raise stopped("top", "watching (q quits with exit 0)") from None
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@click.command()
@click.option(
    "--serve",
    "port",
    type=int,
    metavar="PORT",
    help="Serve /metrics on 127.0.0.1:PORT instead of printing once.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for --serve.")
@click.option("--json", "as_json", is_flag=True, help="The same figures as JSON.")
@pass_state
def metrics(state: Context, port: int | None, host: str, as_json: bool) -> None:
    """Prometheus metrics: instances, restarts, RSS, CPU, sessions, tasks, tokens, cost."""
    manager = state.manager()
    if as_json:
        frame = manager.top().to_dict()
        frame["tasks"] = manager.task_totals()
        sys.stdout.write(json.dumps(frame, indent=2, default=str) + "\n")
        return
    if port is None:
        sys.stdout.write(manager.metrics())
        return
    if not 1 <= port <= 65535:
        raise UsageError(f"invalid --serve {port}: expected a port from 1 to 65535")
    with contextlib.suppress(KeyboardInterrupt):
        manager.serve_metrics(
            host,
            port,
            ready=lambda url: err.print(f"serving metrics on {url} (Ctrl-C to stop)", markup=False),
        )
