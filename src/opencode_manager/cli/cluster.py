"""`ocm cluster`: fleets across hosts on Ray (`pip install 'opencode-manager[ray]'`)."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from rich.table import Table

from .. import DEFAULT_STOP_TIMEOUT, AsyncManager
from .loops import run_with_cancel
from .main import Context
from .output import err, human_bytes, out
from .selection import json_fields_option, print_selected

pass_state = click.make_pass_decorator(Context)


@click.group()
def cluster() -> None:
    """Fleets across hosts on a Ray cluster.

    One host agent per Ray node runs instances on its host, with that host's own OCM_HOME,
    keepers and registry; here they are instances reached by URL, so tasks, batches and
    their results stay on this machine.

    \b
    Examples:
      ocm cluster up --address 10.0.0.5:6379
      ocm start --cluster -n 4 --spread
      ocm cluster ls
      ocm cluster down
    """


@cluster.command()
@click.option(
    "--address",
    metavar="HOST:PORT",
    help="The Ray head's GCS address (kept for later commands; default: the last one).",
)
@json_fields_option
@pass_state
def up(state: Context, address: str | None, as_json: str | None) -> None:
    """Connect and reconcile: one host agent per alive node.

    A missing agent is created (named, detached, pinned to its node) and adopts the
    instances its host still runs; instances whose host left are marked lost, and
    those their host no longer runs (a stop cut short) are recorded stopped.

    \b
    Example:
      ocm cluster up --address 10.0.0.5:6379
    """

    async def go(aio: AsyncManager, cancel: asyncio.Event) -> Any:  # a ClusterReport
        return await aio.cluster_up(address, cancel=cancel)

    report = run_with_cancel(state, go)  # Ctrl-C: stops between hosts, one line, exit 130
    _show(report.to_dict(), as_json)


@cluster.command(name="ls")
@json_fields_option
@pass_state
def ls(state: Context, as_json: str | None) -> None:
    """Hosts, their agents and instances (changes nothing).

    \b
    Example:
      ocm cluster ls --json
    """
    _show(state.manager().cluster_hosts().to_dict(), as_json)


@cluster.command()
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_STOP_TIMEOUT,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL for each server.",
)
@json_fields_option
@pass_state
def down(state: Context, timeout: float, as_json: str | None) -> None:
    """Stop every cluster instance through its agent, then end the agents.

    \b
    Example:
      ocm cluster down
    """
    _show(state.manager().cluster_down(timeout=timeout).to_dict(), as_json)


def _show(report: dict[str, Any], as_json: str | None) -> None:
    if as_json:
        print_selected(report, as_json)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("NODE", "ADDRESS", "AGENT", "FREE", "INSTANCES"):
        table.add_column(column, no_wrap=column != "INSTANCES")
    for host in report["hosts"]:
        names = ", ".join(host["instances"]) or "-"
        if host.get("adopted"):
            names += f" (adopted: {', '.join(host['adopted'])})"
        table.add_row(
            host["node_id"][:12],
            host["address"],
            host["agent"],
            human_bytes(host.get("free_bytes")),
            names,
        )
    out.print(table)
    if report.get("lost"):
        err.print(f"lost with their host: {', '.join(report['lost'])}", markup=False)
    if report.get("stopped"):
        err.print(
            f"not run by their host any more, recorded stopped: {', '.join(report['stopped'])}",
            markup=False,
        )
