"""Commands about the tool itself: install, doctor, restore, demo, model-server."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading

import click
from rich.table import Table
from rich.text import Text

from .. import PINNED_OPENCODE_VERSION, UsageError
from ..fronts import human_size
from .main import Context
from .options import json_option
from .output import ago, err, out, print_json

pass_state = click.make_pass_decorator(Context)


@click.command()
@click.option(
    "--version",
    "version",
    default=PINNED_OPENCODE_VERSION,
    show_default=True,
    help="OpenCode version to install from npm: 1.x comes from opencode-ai, 2.x from "
    "@opencode/cli.",
)
@json_option
@pass_state
def install(state: Context, version: str, as_json: bool) -> None:
    """Install a pinned OpenCode from npm into $OCM_HOME (idempotent).

    The default is OpenCode 2.x's tested version. Versions of both lines can be installed
    side by side; an instance chooses one with `ocm start --opencode VERSION` or a fleet
    file's `opencode` key. To stay on 1.x: `ocm install --version 1.18.33`, then
    `export OCM_OPENCODE=1.18.33`.
    """
    with err.status(f"installing OpenCode {version} from npm…"):
        found = state.manager().install(version)
    if as_json:
        print_json(
            {
                "path": found.path,
                "version": found.version,
                "line": found.line.value,
                "source": found.source,
            }
        )
    else:
        out.print(
            f"opencode {found.version} ({found.line.npm_package}) installed at {found.path}",
            markup=False,
        )


@click.command()
@json_option
@pass_state
def doctor(state: Context, as_json: bool) -> int:
    """Check the binary, OCM_HOME, the registry, every instance's health and auth, and ports."""
    checks = state.manager().doctor()
    failed = [c for c in checks if not c.ok and c.level == "error"]
    if as_json:
        print_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    else:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, style="bold")
        table.add_column(overflow="fold")  # a path cut with an ellipsis cannot be copied
        for check in checks:
            mark = (
                Text("ok", style="green")
                if check.ok
                else Text("warn", style="yellow")
                if check.level == "warning"
                else Text("FAIL", style="red")
            )
            detail = Text(check.detail)
            if check.fix and not check.ok:
                detail.append(f"\n  fix: {check.fix}", style="cyan")
            table.add_row(mark, check.name, detail)
        out.print(table)
    return 1 if failed else 0


@click.command()
@click.argument("backup", required=False)
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="List the backups (newest first) with their integrity_check, and restore nothing.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Restore even though the registry passes integrity_check (it is kept under backups/).",
)
@json_option
@pass_state
def restore(
    state: Context, backup: str | None, list_only: bool, force: bool, as_json: bool
) -> None:
    """Replace a damaged registry with a backup, while the fleet keeps running.

    BACKUP is a file, or a name under $OCM_HOME/backups (`registry-20250131.db` or
    `20250131`); the default is the newest. The backup is checked (integrity_check), copied
    beside the registry and synced, then swapped in with every writer paused; the replaced
    file, its -wal and -shm are kept under backups/. Running keepers notice the new file and
    write their instances into it (an instance the backup does not know is added back), so
    `ls`, `status` and `stop` work at once.

    \b
    Examples:
      ocm doctor                 # says when the registry is damaged
      ocm restore --list
      ocm restore                # the newest backup
      ocm restore 20250131 --json
    """
    manager = state.manager()
    if list_only:
        if backup or force:
            raise UsageError("--list restores nothing: give no BACKUP nor --force with it")
        found = manager.backups()
        if as_json:
            print_json([b.to_dict() for b in found])
            return
        if not found:
            out.print("no backups yet (one is made each day a command opens the registry)")
            return
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("BACKUP", "MADE", "SIZE", "INTEGRITY"):
            table.add_column(column, no_wrap=column != "INTEGRITY")
        for item in found:
            table.add_row(
                item.name,
                ago(item.made_at),
                human_size(item.size),
                Text(item.integrity, style="green" if item.integrity == "ok" else "red"),
            )
        out.print(table)
        return
    report = manager.restore(backup, force=force)
    if as_json:
        print_json(report.to_dict())
    else:
        out.print(report.summary(), markup=False, soft_wrap=True)


@click.command()
@click.option("-n", "count", type=int, default=3, show_default=True, help="Fleet size.")
@json_option
@pass_state
def demo(state: Context, count: int, as_json: bool) -> None:
    """Offline demo: a small fleet on the bundled scripted model, a task each, then stop.

    Needs no API key and no network: the model is a scripted OpenAI-compatible server
    running inside this command.
    """

    def say(text: str) -> None:
        err.print(text, markup=False, highlight=False)

    report = state.manager().demo(count=count, say=None if as_json else say)
    if as_json:
        print_json(report)
        return
    table = Table(title="what the agents did", box=None, header_style="bold", title_justify="left")
    for column in ("INSTANCE", "PROMPT", "REPLY", "TOOLS", "SECONDS"):
        table.add_column(column, overflow="fold")
    for task in report["tasks"]:
        table.add_row(
            task["instance"],
            task["prompt"],
            task["reply"],
            ", ".join(task["tools"]) or "-",
            f"{task['seconds']:.2f}",
        )
    out.print(table)
    out.print(
        f"fleet of {report['fleet']} started in {report['start_seconds']:.1f} s, "
        f"{len(report['tasks'])} tasks in {report['task_seconds']:.1f} s, stopped in "
        f"{report['stop_seconds']:.1f} s; processes left behind: {report['leftover_processes']}",
        markup=False,
    )


@click.command(name="model-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the OpenCode config (OPENCODE_CONFIG_CONTENT) for a model server on --port, "
    "and exit without serving.",
)
@json_option
def model_server(host: str, port: int, print_config: bool, as_json: bool) -> None:
    """Run the scripted OpenAI-compatible model (for your own offline pipeline tests).

    Prints where it listens (with --json: {"url", "base_url", "model", "config"}, the config
    being what OPENCODE_CONFIG_CONTENT needs), then serves until Ctrl-C.

    \b
    Examples:
      ocm model-server --port 18100 &
      config="$(ocm model-server --port 18100 --print-config)"
      ocm start --env OPENCODE_CONFIG_CONTENT="$config"
      ocm run "BASH: echo hello"
    """
    from ..scripted_model import MODEL, ScriptedModelServer, opencode_config  # a front of its own

    if not 0 <= port <= 65535:
        raise click.BadParameter("expected a port from 0 to 65535", param_hint="--port")
    if print_config:
        if port == 0:
            raise UsageError("--print-config needs the --port the model server listens on")
        host_in_url = f"[{host}]" if ":" in host else host
        config = opencode_config(f"http://{host_in_url}:{port}/v1")
        sys.stdout.write(json.dumps(config) + "\n")
        return
    # A shell starts background jobs with SIGINT ignored: take it back, and SIGTERM too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with ScriptedModelServer(host, port) as server:
        if as_json:
            print_json(
                {
                    "url": server.url,
                    "base_url": server.base_url,
                    "model": MODEL,
                    "config": opencode_config(server.base_url),
                }
            )
        else:
            out.print(f"scripted model listening on {server.base_url}", markup=False)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
