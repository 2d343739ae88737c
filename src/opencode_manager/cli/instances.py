"""Instance lifecycle commands: start, ls, status, env, stop, restart, rm, cleanup, logs."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from .. import (
    DEFAULT_STOP_TIMEOUT,
    LOG_LEVELS,
    RESTART_POLICIES,
    AsyncManager,
    InstanceInfo,
    Interrupted,
    LogLine,
    Manager,
    StartProgress,
    Status,
    Supervision,
    UsageError,
)
from ..fronts import (
    is_loopback_host,
    one_line,
    parse_duration,
    parse_port,
    parse_port_range,
    parse_size,
)
from .loops import run_with_cancel, stopped
from .main import Context
from .options import complete_instances, json_fields_option, json_option, select_fields
from .output import (
    ago,
    err,
    human_bytes,
    human_duration,
    instances_table,
    out,
    print_json,
    status_text,
)

if TYPE_CHECKING:
    from rich.progress import Progress

pass_state = click.make_pass_decorator(Context)
#: The supervision options' defaults (supervision.DEFAULTS, through the library's options).
SUPERVISION = Supervision()


class _StartBar:
    """A progress bar on stderr while instances come up (none when not a terminal: then
    rich's progress module is not even imported, which `ocm start` in a script would pay)."""

    def __init__(self, total: int, verb: str) -> None:
        self.total, self.verb = total, verb
        self.progress: Progress | None = None

    def __enter__(self) -> StartProgress:
        if not err.is_terminal:
            return lambda name, phase: None
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        progress = self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} healthy"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        task = progress.add_task(f"{self.verb} {self.total} instance(s)", total=self.total)
        progress.start()

        def update(name: str, phase: str) -> None:
            if phase in ("running", "failed"):
                progress.advance(task)
            progress.update(task, description=f"{name}: {phase}")

        return update

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


@click.command()
@click.argument("name", required=False)
@click.option(
    "-n",
    "count",
    type=int,
    default=1,
    show_default=True,
    help="How many instances (NAME-1..NAME-N when NAME is given).",
)
@click.option("--port", "port", metavar="P", help="Fixed port (one instance).")
@click.option(
    "--port-range",
    "port_range",
    metavar="A-B",
    help="Allocate free ports from this range (locked, race-free).",
)
@click.option("--hostname", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--dir", "directory", metavar="PATH", help="Project directory (default: cwd).")
@click.option("--cors", multiple=True, metavar="ORIGIN", help="Extra allowed CORS origin.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False))
@click.option("--env", "env", multiple=True, metavar="K=V", help="Extra environment variable.")
@click.option("--no-auth", is_flag=True, help="No password (allowed on loopback only).")
@click.option(
    "--shared-data",
    is_flag=True,
    help="Use your own OpenCode data dirs instead of private ones per instance.",
)
@click.option(
    "--restart",
    "restart_policy",
    default=SUPERVISION.restart,
    show_default=True,
    type=click.Choice(RESTART_POLICIES),
    help="When the keeper restarts the server.",
)
@click.option(
    "--max-restarts",
    type=int,
    default=SUPERVISION.max_restarts,
    show_default=True,
    metavar="N",
    help="Restarts allowed within --restart-window before giving up (errored).",
)
@click.option(
    "--restart-window",
    type=float,
    default=SUPERVISION.restart_window,
    show_default=True,
    metavar="S",
    help="Window (seconds) for --max-restarts.",
)
@click.option(
    "--health-interval",
    type=float,
    default=SUPERVISION.health_interval,
    show_default=True,
    metavar="S",
    help="Seconds between liveness probes; 3 misses in a row recycle the server.",
)
@click.option("--max-memory", metavar="SIZE", help="Recycle above this RSS (e.g. 1500M, 2G).")
@click.option("--max-age", metavar="DUR", help="Recycle when older than this (e.g. 12h).")
@click.option(
    "--log-max-size",
    default=f"{SUPERVISION.log_max_size >> 20}M",  # in MiB, as --help has always shown it
    show_default=True,
    metavar="SIZE",
    help="Rotate the instance log above this size.",
)
@click.option(
    "--log-keep",
    type=int,
    default=SUPERVISION.log_keep,
    show_default=True,
    metavar="N",
    help="Rotated log files kept.",
)
@click.option(
    "--no-warm",
    is_flag=True,
    help="Report the instance running once healthy, without the warm-up: two turns "
    "answered by ocm's own model (never yours), so the first task is not the slowest.",
)
@click.option(
    "--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for health."
)
@click.option(
    "--opencode",
    metavar="PATH|VERSION",
    help="OpenCode binary for these instances, kept across restarts: a path, or a version "
    "`ocm install --version` installed (1.x or 2.x).",
)
@click.option(
    "--existing",
    is_flag=True,
    help="Start the recorded instance NAME with its own settings if it is not running.",
)
@click.option(
    "--cluster",
    "on_cluster",
    is_flag=True,
    help="Place them on the Ray cluster's hosts (`ocm cluster up` first).",
)
@click.option(
    "--per-host", type=int, metavar="K", help="With --cluster: at most K instances per host."
)
@click.option(
    "--spread",
    is_flag=True,
    help="With --cluster: even out the count per host (default: most free memory first).",
)
@json_option
@pass_state
def start(
    state: Context,
    name: str | None,
    count: int,
    port: str | None,
    port_range: str | None,
    hostname: str,
    directory: str | None,
    cors: tuple[str, ...],
    log_level: str | None,
    env: tuple[str, ...],
    no_auth: bool,
    shared_data: bool,
    restart_policy: str,
    max_restarts: int,
    restart_window: float,
    health_interval: float,
    max_memory: str | None,
    max_age: str | None,
    log_max_size: str,
    log_keep: int,
    no_warm: bool,
    timeout: float,
    opencode: str | None,
    existing: bool,
    on_cluster: bool,
    per_host: int | None,
    spread: bool,
    as_json: bool,
) -> None:
    """Start N OpenCode servers as supervised background daemons.

    Returns once every instance answers its health check, or fails fast with the cause and
    the server's last log lines. Each instance gets a generated password (kept 0600 in
    $OCM_HOME, passed by environment), private data dirs and its own log.

    \b
    Examples:
      ocm start                             # one instance, oc-1
      ocm start api --dir ~/src/api --max-memory 1500M
      ocm start -n 4 --port-range 4100-4199 --json
      ocm start --existing api              # a stopped one, as it was
      ocm start --cluster -n 4 --spread     # on the Ray cluster's hosts
    """
    if timeout <= 0:
        raise UsageError(f"invalid --timeout {timeout}: must be above 0")
    if on_cluster:
        _start_on_cluster(
            state, name, count, directory, env, per_host, spread, timeout, opencode, as_json
        )
        return
    if per_host is not None or spread:
        raise UsageError("--per-host and --spread go with --cluster")
    if existing:
        _start_existing(state, name, timeout, opencode, as_json)
        return
    supervision = Supervision(
        restart=restart_policy,
        max_restarts=max_restarts,
        restart_window=restart_window,
        health_interval=health_interval,
        max_memory=parse_size(max_memory) if max_memory else None,
        max_age=parse_duration(max_age) if max_age else None,
        log_max_size=parse_size(log_max_size),
        log_keep=log_keep,
        warm=not no_warm,
    )

    async def go(aio: AsyncManager, cancel: asyncio.Event) -> list[InstanceInfo]:
        return await aio.start(
            name,
            count=count,
            directory=directory,
            port=parse_port(port) if port is not None else None,
            port_range=parse_port_range(port_range) if port_range else None,
            hostname=hostname,
            cors=cors,
            log_level=log_level,
            env=env,
            auth=not no_auth,
            shared_data=shared_data,
            supervision=supervision,
            timeout=timeout,
            progress=progress,
            cancel=cancel,  # Ctrl-C: what this command created is stopped and removed
            opencode=opencode,
        )

    with _StartBar(max(count, 1), "starting") as progress:
        infos = run_with_cancel(state, go)
    if as_json:
        print_json([i.to_dict() for i in infos])
    else:
        out.print(instances_table(infos))
    warning = exposure_warning(hostname)
    if warning:
        err.print(warning, style="yellow", markup=False)
    if state.settings().warmup_timeout > 0 and not no_warm:
        # With the warm-up off, `ocm start` touches no project directory: this call would
        # bootstrap it, which is the warm-up's work (`ocm doctor` still checks).
        _warn_about_projects(state.manager(), [info.name for info in infos])


def _given_besides(allowed: set[str]) -> list[str]:
    """The options typed on the command line, other than `allowed` (for a mode that
    ignores the rest: say so rather than drop them silently)."""
    context = click.get_current_context()
    return [
        p.opts[0] if p.opts else str(p.name)
        for p in context.command.params
        if p.name not in allowed
        and context.get_parameter_source(p.name or "") is click.core.ParameterSource.COMMANDLINE
    ]


_CLUSTER_ALLOWS = {"name", "count", "directory", "env", "timeout", "on_cluster", "per_host",
                   "spread", "opencode", "as_json"}  # fmt: skip


def _start_on_cluster(
    state: Context,
    name: str | None,
    count: int,
    directory: str | None,
    env: tuple[str, ...],
    per_host: int | None,
    spread: bool,
    timeout: float,
    opencode: str | None,
    as_json: bool,
) -> None:
    given = _given_besides(_CLUSTER_ALLOWS)
    if given:
        raise UsageError(
            f"--cluster places instances on its hosts' own addresses with passwords; "
            f"{', '.join(given)} does not apply there"
        )

    async def go(aio: AsyncManager, cancel: asyncio.Event) -> list[InstanceInfo]:
        return await aio.cluster_start(
            name, count=count, directory=directory, env=env, per_host=per_host,
            spread=spread, timeout=timeout, opencode=opencode,
            cancel=cancel,  # Ctrl-C or SIGTERM: what the agents started for it is undone
        )  # fmt: skip

    infos = run_with_cancel(state, go)
    if as_json:
        print_json([i.to_dict() for i in infos])
    else:
        out.print(instances_table(infos))


_EXISTING_ALLOWS = {"name", "existing", "timeout", "opencode", "as_json"}


def _start_existing(
    state: Context, name: str | None, timeout: float, opencode: str | None, as_json: bool
) -> None:
    given = _given_besides(_EXISTING_ALLOWS)
    if given:
        raise UsageError(
            f"--existing starts NAME with its recorded settings; {', '.join(given)} "
            "cannot change them (use `ocm rm` and `ocm start`, or a fleet file)"
        )
    if name is None:
        raise UsageError("--existing needs the NAME of a recorded instance")

    async def go(aio: AsyncManager, cancel: asyncio.Event) -> list[InstanceInfo]:
        return await aio.start_existing([name], timeout=timeout, cancel=cancel)

    infos = run_with_cancel(state, go, opencode)
    if as_json:
        print_json([i.to_dict() for i in infos])
    else:
        out.print(instances_table(infos))


def _warn_about_projects(manager: Manager, names: list[str]) -> None:
    """A project config OpenCode cannot parse leaves the server healthy: say so at once."""
    for problem in manager.project_checks(names, mcp=False):
        err.print(
            f"warning: {problem.name.removeprefix('instance ')}: {problem.detail}"
            + (f"; {problem.fix}" if problem.fix else ""),
            style="yellow",
            markup=False,
        )


def exposure_warning(hostname: str) -> str | None:
    """What to say after starting servers that other machines can reach."""
    if is_loopback_host(hostname):
        return None
    return (
        f"warning: {hostname} is reachable from other machines, and the server's Basic auth "
        "travels in clear text without TLS; put it behind a TLS proxy or bind 127.0.0.1"
    )


@click.command(name="ls")
@click.option("--no-foreign", is_flag=True, help="Only instances ocm manages.")
@json_fields_option
@pass_state
def ls(state: Context, no_foreign: bool, as_json: str | None) -> None:
    """List instances, and OpenCode servers started by others (foreign, never signalled).

    \b
    Examples:
      ocm ls
      ocm ls --json name,status,url
      ocm ls --no-foreign --json | jq -r '.[].name'
    """
    infos = state.manager().instances(include_foreign=not no_foreign)
    if as_json:
        print_json(select_fields([i.to_dict() for i in infos], as_json))
    elif not infos:
        err.print("no instances; start one with `ocm start`", markup=False)
    else:
        out.print(instances_table(infos))


@click.command()
@click.argument("ref", shell_complete=complete_instances)
@json_option
@pass_state
def status(state: Context, ref: str, as_json: bool) -> int:
    """Detailed report on one instance: settings, processes, memory, sessions, MCP, LSP,
    errors. Exits 0 when it runs and answers, 1 otherwise (stopped, crashed, unhealthy).

    \b
    Examples:
      ocm status oc-1
      ocm status 4101 --json | jq .sessions
      ocm status api >/dev/null || ocm restart api
    """
    found = state.manager().status(ref)
    if as_json:
        print_json(found.to_dict())
    else:
        _print_status(found.to_dict())
    return 0 if found.healthy else 1


def _mcp_text(mcp: dict[str, Any]) -> Text:
    """`name: connected, other: failed (spawn npx ENOENT)`: a failure says why."""
    text = Text()
    for number, (name, state) in enumerate(sorted(mcp.items())):
        if number:
            text.append(", ")
        status = state.get("status", "?") if isinstance(state, dict) else str(state)
        reason = state.get("error") if isinstance(state, dict) else None
        label = f"{name}: {status}" + (f" ({one_line(str(reason))})" if reason else "")
        text.append(label, style="red" if status == "failed" else "")
    return text if mcp else Text("none configured")


def _settings_text(s: dict[str, Any]) -> str:
    """How it was started, in one wrapped paragraph (environment: keys, never values)."""
    parts = [
        f"restart {s['restart']} (at most {s['max_restarts']} in {s['restart_window']:g} s)",
        f"health every {s['health_interval']:g} s",
        f"max memory {human_bytes(s['max_memory']) if s['max_memory'] else '-'}",
        f"max age {human_duration(s['max_age']) if s['max_age'] else '-'}",
        f"log {human_bytes(s['log_max_size'])} x{s['log_keep']}",
        f"cors {', '.join(s['cors']) or '-'}",
        f"env {', '.join(s['env_keys']) or '-'}",
    ]
    if s.get("port_range"):
        parts.append(f"port range {s['port_range'][0]}-{s['port_range'][1]}")
    if s.get("shared_data"):
        parts.append("shared data")
    if s.get("warm") is False:
        parts.append("no warm-up")
    return "; ".join(parts)


def _print_status(r: dict[str, Any]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    st = Status(r["status"])
    grid.add_row("name", r["name"])
    grid.add_row(
        "status",
        status_text(st, r.get("supervised"), r.get("keeper_answering"), bool(r.get("service"))),
    )
    if r.get("keeper_error"):
        grid.add_row("keeper", Text(str(r["keeper_error"]), style="yellow"))
    if r.get("error"):
        grid.add_row("error", Text(str(r["error"]), style="red"))
    grid.add_row("url", r.get("url") or "-")
    line = f" (OpenCode {r['line']}.x)" if r.get("line") else ""
    grid.add_row("version", (r.get("version") or "-") + line)
    grid.add_row("pid", f"{r.get('pid') or '-'} (keeper {r.get('keeper_pid') or '-'})")
    grid.add_row("dir", r.get("dir") or "-")
    grid.add_row("auth", {True: "password", False: "none", None: "?"}[r.get("auth")])
    grid.add_row("uptime", human_duration(r.get("uptime_s")))
    grid.add_row("restarts", f"{r.get('restarts', 0)} (last exit: {r.get('last_exit') or '-'})")
    latest = r.get("last_event")
    if latest:
        grid.add_row(
            "last event", f"{latest['kind']} {ago(latest['time'])}: {latest.get('detail') or ''}"
        )
    grid.add_row(
        "memory",
        f"{human_bytes(r.get('rss_bytes'))} server, "
        f"{human_bytes(r.get('tree_rss_bytes'))} with children",
    )
    conns = r.get("connections") or {}
    grid.add_row(
        "connections", ", ".join(f"{k.lower()} {v}" for k, v in sorted(conns.items())) or "-"
    )
    sessions = r.get("sessions")
    grid.add_row(
        "sessions",
        "-"
        if not sessions
        else f"{sessions['total']} ({sessions['busy']} busy, {sessions['idle']} idle)",
    )
    mcp = r.get("mcp")
    grid.add_row("mcp", "-" if mcp is None else _mcp_text(mcp))
    lsp = r.get("lsp")
    grid.add_row(
        "lsp",
        "-"
        if lsp is None
        else (
            ", ".join(
                str(x.get("name") or x.get("id") or x) if isinstance(x, dict) else str(x)
                for x in lsp
            )
            or "none running"
        ),
    )
    for problem in r.get("api_errors") or []:
        grid.add_row("api error", Text(one_line(str(problem)), style="red"))
    settings = r.get("settings")
    if settings:
        grid.add_row("settings", _settings_text(settings))
    grid.add_row("log", r.get("log") or "-")
    grid.add_row("stopped", ago(r.get("stopped_at")) if r.get("stopped_at") else "-")
    out.print(grid)
    procs = r.get("processes") or []
    if procs:
        table = Table(title="processes", box=None, header_style="bold", title_justify="left")
        for col in ("PID", "PPID", "PGID", "NAME", "STATUS", "MEM", "COMMAND"):
            table.add_column(col, no_wrap=col != "COMMAND", overflow="fold")
        for p in procs:
            table.add_row(
                str(p["pid"]),
                str(p["ppid"]),
                str(p["pgid"]),
                p["name"],
                p["status"],
                human_bytes(p["rss_bytes"]),
                p["cmd"],
            )
        out.print(table)
    errors = r.get("recent_errors") or []
    if errors:
        out.print(Text("recent log errors:", style="bold"))
        for line in errors:
            out.print(Text("  " + line, style="red"))


@click.command()
@click.argument("ref", shell_complete=complete_instances)
@json_option
@pass_state
def env(state: Context, ref: str, as_json: bool) -> None:
    """Print `export` lines so OpenCode's CLI, curl and SDKs can reach an instance:
    OPENCODE_SERVER_URL, _USERNAME, _PASSWORD, and OPENCODE_BIN, the binary it runs
    (OpenCode need not be on PATH).

    \b
    Examples:
      eval "$(ocm env oc-1)"
      "$OPENCODE_BIN" attach "$OPENCODE_SERVER_URL"    # 1.x; or: ocm attach oc-1
      "$OPENCODE_BIN" --server "$OPENCODE_SERVER_URL"  # 2.x (no attach)
    """
    values = state.manager().env(ref)
    if as_json:
        print_json(values)
        return
    for key, value in values.items():
        click.echo(f"export {key}={shlex.quote(value)}")
    if "OPENCODE_SERVER_PASSWORD" not in values:
        # A --no-auth instance: a password left from another instance must not follow.
        click.echo("unset OPENCODE_SERVER_PASSWORD")


@click.command()
@click.argument("refs", nargs=-1, shell_complete=complete_instances)
@click.option("--all", "all_", is_flag=True, help="Every running instance ocm manages.")
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_STOP_TIMEOUT,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL.",
)
@json_option
@pass_state
def stop(state: Context, refs: tuple[str, ...], all_: bool, timeout: float, as_json: bool) -> None:
    """Stop instances: dispose, SIGTERM the group, wait, SIGKILL, end every descendant.

    Only processes ocm started and can prove are its own (PID + start time) are signalled.

    \b
    Examples:
      ocm stop oc-1 4101 http://127.0.0.1:4102   # by name, port or URL
      ocm stop --all --timeout 5
    """
    try:
        results = state.manager().stop(list(refs), all=all_, timeout=timeout)
    except KeyboardInterrupt:
        # A stop asked of a keeper goes on without this command; one not asked yet is not.
        raise Interrupted(
            "stop interrupted: the stops already asked for go on; `ocm ls` shows what still "
            "runs, `ocm stop` again stops it"
        ) from None
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    if not results:
        err.print("nothing to stop", markup=False)
    for r in results:
        note = f" ({r.killed} needed SIGKILL)" if r.killed else ""
        port = "" if r.port_freed is not False else " [port still busy]"
        out.print(f"stopped {r.name}{note}{port}", markup=False)


@click.command()
@click.argument("refs", nargs=-1, shell_complete=complete_instances)
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Every instance not stopped on purpose (running, crashed, errored).",
)
@click.option(
    "--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for health."
)
@json_option
@pass_state
def restart(
    state: Context, refs: tuple[str, ...], all_: bool, timeout: float, as_json: bool
) -> None:
    """Restart instances with the same name, settings, password and data.

    \b
    Examples:
      ocm restart oc-2
      ocm restart --all
    """

    async def go(aio: AsyncManager, cancel: asyncio.Event) -> list[InstanceInfo]:
        return await aio.restart(
            list(refs), all=all_, timeout=timeout, progress=progress, cancel=cancel
        )

    with _StartBar(max(len(refs), 1), "restarting") as progress:
        infos = run_with_cancel(state, go)
    manager = state.manager()
    if not infos and not as_json:
        err.print("nothing to restart", markup=False)
        return
    if as_json:
        print_json([i.to_dict() for i in infos])
    else:
        out.print(instances_table(infos))
    _warn_about_projects(manager, [info.name for info in infos])


@click.command(name="rm")
@click.argument("refs", nargs=-1, required=True, shell_complete=complete_instances)
@click.option("-f", "--force", is_flag=True, help="Stop running instances first.")
@json_option
@pass_state
def rm(state: Context, refs: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Forget stopped instances (record, password, private data; logs stay until cleanup)."""
    removed = state.manager().remove(list(refs), force=force)
    if as_json:
        print_json({"removed": removed})
    else:
        for name in removed:
            out.print(f"removed {name}", markup=False)


@click.command()
@click.option(
    "--older-than",
    "older_than",
    default="0s",
    show_default=True,
    metavar="DUR",
    help="Only what ended longer ago than this (e.g. 30m, 12h, 7d).",
)
@click.option("--dry-run", is_flag=True, help="Show what would go, change nothing.")
@click.option(
    "--results",
    "with_results",
    is_flag=True,
    help="Also delete finished task results and batches as old (`ocm results prune`).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also remove task worktrees holding uncommitted files or unmerged commits.",
)
@json_option
@pass_state
def cleanup(
    state: Context,
    older_than: str,
    dry_run: bool,
    with_results: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Forget stopped and crashed instances, and delete logs and dirs nobody owns.

    Passwords with no instance (left by a command killed half-way) go too, and the
    worktrees of tasks no longer recorded, except one holding work (uncommitted files,
    commits not in its repository's HEAD): it is kept and named, unless --force.

    \b
    Examples:
      ocm cleanup --dry-run
      ocm cleanup --older-than 7d --results
    """
    manager = state.manager()
    age = parse_duration(older_than)
    report = manager.cleanup(older_than=age, dry_run=dry_run, force=force)
    pruned = manager.prune_results(age, dry_run=dry_run) if with_results else None
    if as_json:
        data = report.to_dict()
        if pruned is not None:
            data["results"] = pruned.to_dict()
        print_json(data)
        return
    if pruned is not None and pruned.tasks:
        out.print(
            f"{'would delete' if dry_run else 'deleted'} {pruned.tasks} results "
            f"({len(pruned.batches)} batches)",
            markup=False,
        )
    verb = "would remove" if dry_run else "removed"
    for name in report.reconciled:
        out.print(
            f"{'would mark' if dry_run else 'marked'} {name} crashed (found dead)", markup=False
        )
    for name in report.removed_instances:
        out.print(f"{verb} instance {name}", markup=False)
    forced = {leftover.path: leftover.reason for leftover in report.forced}
    for path in report.removed_files:
        if path in forced:
            out.print(f"{verb} {path} (--force; it held {forced[path]})", markup=False)
        else:
            out.print(f"{verb} {path}", markup=False)
    for leftover in report.kept:
        err.print(
            f"{'would keep' if dry_run else 'kept'} {leftover.path}: {leftover.reason}; "
            "--force removes it",
            markup=False,
        )
    if not (
        report.removed_instances or report.removed_files or report.reconciled or report.kept
    ) and not (pruned and pruned.tasks):
        out.print("nothing to clean up", markup=False)


@click.command()
@click.argument("ref", required=False, shell_complete=complete_instances)
@click.option("-n", "limit", type=int, default=50, show_default=True, help="The newest N.")
@json_fields_option
@pass_state
def events(state: Context, ref: str | None, limit: int, as_json: str | None) -> None:
    """Lifecycle events (started, healthy, unhealthy, restarted, crashed, errored, stopped)."""
    if limit < 1:
        raise UsageError(f"invalid -n {limit}: must be 1 or more")
    rows = [event.to_dict() for event in state.manager().events(ref, limit=limit)]
    if as_json:
        print_json(select_fields(rows, as_json))
        return
    if not rows:
        err.print("no events", markup=False)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("TIME", "INSTANCE", "EVENT", "DETAIL"):
        table.add_column(column, no_wrap=column != "DETAIL")
    styles = {
        "crashed": "red",
        "errored": "bold red",
        "unhealthy": "yellow",
        "healthy": "green",
        "restarted": "cyan",
        "recycled": "cyan",
    }
    for row in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["time"]))
        table.add_row(
            stamp,
            row["instance"],
            Text(row["kind"], style=styles.get(row["kind"], "")),
            row["detail"] or "",
        )
    out.print(table)


@click.command()
@click.argument("refs", nargs=-1, required=True, shell_complete=complete_instances)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "lines", type=int, default=50, show_default=True, help="Lines from the end.")
@click.option("--grep", "pattern", metavar="RE", help="Only lines matching this regex.")
@click.option(
    "--level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Only lines of at least this level.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per line: instance, line, level."
)
@pass_state
def logs(
    state: Context,
    refs: tuple[str, ...],
    follow: bool,
    lines: int,
    pattern: str | None,
    level: str | None,
    as_json: bool,
) -> None:
    """Show the logs of one or more instances, merged and labelled (errors highlighted).

    Reads across rotated files; -f follows the logs through rotations.

    \b
    Examples:
      ocm logs oc-1 -n 50
      ocm logs oc-1 oc-2 -f --grep ERROR
    """
    manager = state.manager()
    names = list(dict.fromkeys(refs))
    label = len(names) > 1
    if not follow:
        for item in manager.logs(names, lines=lines, pattern=pattern, level=level):
            _emit_log_line(item, label=label, as_json=as_json)
        return
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        # The tail, then new lines: no line falls between the two.
        for item in manager.follow_logs(names, lines=lines, pattern=pattern, level=level):
            _emit_log_line(item, label=label, as_json=as_json)
    except KeyboardInterrupt:
        raise stopped("logs", f"following {', '.join(names)}") from None


def _emit_log_line(item: LogLine, *, label: bool, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(item.to_dict()) + "\n")
        sys.stdout.flush()
        return
    _print_log_line(item.instance if label else None, item)


def _print_log_line(label: str | None, item: LogLine) -> None:
    style = {"ERROR": "red", "WARN": "yellow"}.get(item.level, "")
    text = Text()
    if label:
        text.append(f"{label} | ", style="cyan")
    text.append(item.line, style=style)
    out.print(text, soft_wrap=True)
