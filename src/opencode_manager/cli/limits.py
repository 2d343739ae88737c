"""`ocm limits`: provider limits shared by the whole fleet, and what is in use now."""

from __future__ import annotations

import time
from collections.abc import Sequence

import click
from rich.console import Group, RenderableType
from rich.text import Text

from .. import LimitStatus
from .main import Context
from .output import Cell, Column, err, fitted_table, human_duration, out, table_width
from .selection import json_fields_option, print_selected

pass_state = click.make_pass_decorator(Context)

LIMIT_COLUMNS = (
    Column("SCOPE"),
    Column("IN USE", right=True),
    Column("RPM", right=True),
    Column("QUEUED", right=True),
    Column("BREAKER"),
    Column("SOURCE", drop=1),
)
BREAKER_STYLE = {"closed": "green", "open": "red", "half_open": "yellow"}


@click.group(invoke_without_command=True)
@json_fields_option
@click.pass_context
def limits(ctx: click.Context, as_json: str | None) -> None:
    """Provider limits shared by the whole fleet, with what is in use now.

    A limit caps a provider (every model of it) or one PROVIDER/MODEL: at most
    --concurrency turns in flight at once and --rpm turns started per minute. Every task,
    whichever front sent it (run, batch, MCP, the dashboard), takes a slot before it sends
    and gives it back when its turn ends; the slots are leases in the registry, so a killed
    process's slots come back by themselves. Listed with each: slots in use, turns started
    in the last minute, tasks queued, and the provider's circuit breaker (open while the
    provider keeps failing: its tasks wait instead of failing).

    \b
    Examples:
      ocm limits
      ocm limits set anthropic --concurrency 8 --rpm 50
      ocm limits set anthropic/claude-opus-4 --concurrency 2
      ocm limits rm anthropic/claude-opus-4
      ocm limits --json
    """
    if ctx.invoked_subcommand is not None:
        if as_json:
            raise click.UsageError("put --json after the subcommand: ocm limits set ... --json")
        return
    state = ctx.find_object(Context)
    assert state is not None
    rows = state.manager().limits()
    if as_json:
        print_selected([row.to_dict() for row in rows], as_json)
    elif not rows:
        err.print(
            "no limits; set one with `ocm limits set PROVIDER[/MODEL] --concurrency N`",
            markup=False,
        )
    else:
        out.print(limits_table(rows, now=time.time()))


def limits_table(rows: Sequence[LimitStatus], *, now: float) -> RenderableType:
    """One row per limit (and per provider with traffic but no limit), then why each open
    breaker opened."""
    cells: list[list[Cell]] = [
        [
            row.scope,
            f"{row.in_use}/{row.concurrency}" if row.concurrency else str(row.in_use),
            f"{row.started_last_minute}/{row.rpm}" if row.rpm else str(row.started_last_minute),
            str(row.queued),
            breaker_text(row, now),
            row.source or "-",
        ]
        for row in rows
    ]
    table = fitted_table(LIMIT_COLUMNS, cells, table_width())
    reasons = {row.provider: row.breaker_reason for row in rows if row.breaker_reason}
    if not reasons:
        return table
    lines = [Text(f"{provider}: {reason}", style="dim") for provider, reason in reasons.items()]
    return Group(table, Text(""), *lines)


def breaker_text(row: LimitStatus, now: float) -> Text:
    label = row.breaker.replace("_", "-")
    if row.breaker == "open" and row.breaker_until is not None:
        label += f" ({human_duration(max(0.0, row.breaker_until - now))} left)"
    elif row.breaker == "closed" and row.failures:
        label += f" ({row.failures} failure{'s' if row.failures != 1 else ''})"
    return Text(label, style=BREAKER_STYLE.get(row.breaker, ""))


@limits.command(name="set")
@click.argument("scope", metavar="PROVIDER[/MODEL]")
@click.option("--concurrency", type=int, metavar="N", help="At most N turns in flight at once.")
@click.option("--rpm", type=int, metavar="N", help="At most N turns started per minute.")
@json_fields_option
@pass_state
def set_(
    state: Context, scope: str, concurrency: int | None, rpm: int | None, as_json: str | None
) -> None:
    """Create or replace the limit of PROVIDER or PROVIDER/MODEL.

    An option left out is no cap (setting a limit again replaces it whole). A provider's
    limit covers all its models together; a model's limit adds to it.

    \b
    Examples:
      ocm limits set anthropic --concurrency 8 --rpm 50
      ocm limits set openrouter/anthropic/claude-3 --rpm 20
    """
    limit = state.manager().limit_set(scope, concurrency=concurrency, rpm=rpm)
    if as_json:
        row = {"scope": str(limit.scope), "concurrency": limit.concurrency, "rpm": limit.rpm}
        print_selected(row, as_json)
        return
    caps = [f"concurrency {limit.concurrency}" if limit.concurrency else "",
            f"rpm {limit.rpm}" if limit.rpm else ""]  # fmt: skip
    out.print(f"{limit.scope}: {', '.join(c for c in caps if c)}", markup=False)


@limits.command(name="rm")
@click.argument("scopes", nargs=-1, required=True, metavar="PROVIDER[/MODEL]...")
@json_fields_option
@pass_state
def rm(state: Context, scopes: tuple[str, ...], as_json: str | None) -> None:
    """Remove limits (all or none: an unknown one removes nothing, exit 3).

    \b
    Example:
      ocm limits rm anthropic/claude-opus-4
    """
    removed = state.manager().limit_remove(list(scopes))
    if as_json:
        print_selected({"removed": removed}, as_json)
    else:
        for scope in removed:
            out.print(f"removed {scope}", markup=False)
