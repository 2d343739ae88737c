"""After a reboot: `ocm save`, `ocm resurrect`, `ocm export systemd`."""

from __future__ import annotations

import asyncio

import click

from .. import DEFAULT_START_TIMEOUT, AsyncManager, ResurrectReport, StartError
from .loops import run_with_cancel
from .main import Context
from .options import complete_instances
from .output import err, out
from .selection import json_fields_option, print_selected

pass_state = click.make_pass_decorator(Context)


@click.command(name="save")
@click.option("--force", is_flag=True, help="Save even when nothing runs (an empty dump).")
@json_fields_option
@pass_state
def save(state: Context, force: bool, as_json: str | None) -> None:
    """Write the running fleet to $OCM_HOME/dump.json for `ocm resurrect` (like `pm2 save`).

    The write is atomic and 0600; the previous dump is kept as dump.json.bak. No passwords
    go in it (they stay in $OCM_HOME/secrets).

    \b
    Examples:
      ocm save
      ocm save --json
    """
    report = state.manager().save(force=force)
    if as_json:
        print_selected(report.to_dict(), as_json)
        return
    names = ", ".join(report.saved) or "nothing"
    out.print(f"saved {names} to {report.path}", markup=False)


@click.command(name="resurrect")
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_START_TIMEOUT,
    show_default=True,
    help="Seconds to wait for health.",
)
@json_fields_option
@pass_state
def resurrect(state: Context, timeout: float, as_json: str | None) -> None:
    """Start what `ocm save` recorded that is not running: the same names, settings and (when
    free) ports. Running instances and others are left alone. Exit 6 if one failed.

    Resurrects take turns: one started while another runs waits for it, then reports the
    instances it brought back as running (exit 4 if the other has not finished in time).
    Ctrl-C stops again what it had started, says so in one line and exits 130.

    \b
    Examples:
      ocm resurrect
      ocm export systemd --all     # run it at every login
    """

    async def go(aio: AsyncManager, cancel: asyncio.Event) -> ResurrectReport:
        return await aio.resurrect(timeout=timeout, cancel=cancel)

    report = run_with_cancel(state, go)
    if report.waited_for is not None and not as_json:
        err.print(
            f"waited for another `ocm resurrect` (pid {report.waited_for}) to finish first",
            markup=False,
        )
    if as_json:
        print_selected(report.to_dict(), as_json)
    else:
        for name in report.started:
            out.print(f"started {name}", markup=False)
        for name in report.running:
            out.print(f"running {name} (left alone)", markup=False)
        for name, why in report.skipped.items():
            err.print(f"skipped {name}: {why}", markup=False)
        for name, why in report.failed.items():
            err.print(f"failed {name}: {why}", markup=False)
    if report.failed:
        names = ", ".join(report.failed)
        raise StartError(f"could not bring back {names}; see `ocm logs` and `ocm status`")


@click.group(name="export")
def export() -> None:
    """Write files that run the fleet under other tools (systemd)."""


@export.command(name="systemd")
@click.argument("refs", nargs=-1, shell_complete=complete_instances)
@click.option("--all", "all_", is_flag=True, help="One unit running `ocm resurrect` at login.")
@click.option("--fleet", "fleet_file", metavar="FILE", help="One unit running `ocm up -f FILE`.")
@click.option("--dir", "directory", metavar="DIR", help="Where (default ~/.config/systemd/user).")
@json_fields_option
@pass_state
def systemd(
    state: Context,
    refs: tuple[str, ...],
    all_: bool,
    fleet_file: str | None,
    directory: str | None,
    as_json: str | None,
) -> None:
    """Write systemd user units that bring instances back at boot and stop them with the
    unit; print the commands that enable them (nothing is enabled for you).

    Each instance's keeper still applies its restart policy; the unit starts it at login
    (with lingering: at boot) with `ocm start --existing`. Use per-instance units, or --all
    (the saved fleet: `ocm save` first), or --fleet, not several: they would start the same
    instances.

    \b
    Examples:
      ocm export systemd api web
      ocm save && ocm export systemd --all
      ocm export systemd --fleet ocm.toml
    """
    found = state.manager().export_systemd(
        refs, all=all_, fleet_file=fleet_file, directory=directory
    )
    if as_json:
        print_selected(found.to_dict(), as_json)
        return
    # Paths and commands are to be copied: never folded (the terminal wraps them whole).
    for path in found.paths:
        out.print(f"wrote {path}", markup=False, soft_wrap=True)
    err.print("to enable them (and keep them running without a login session):", markup=False)
    for command in found.commands:
        out.print(f"  {command}", markup=False, soft_wrap=True)
    err.print(
        "logs: journalctl --user -u UNIT; API keys from your shell are not seen under "
        "systemd (use OpenCode's auth.json or --env)",
        markup=False,
    )
