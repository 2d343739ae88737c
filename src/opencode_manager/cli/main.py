"""Entry point: the command group, shared options, and the one place errors become exit codes."""

from __future__ import annotations

import difflib
import errno
import importlib
import sys
from typing import TYPE_CHECKING, Any

import click

from .. import Interrupted, OcmError, Settings, StartError, __version__
from ..fronts import strip_ansi
from .plain import say

EXIT_USAGE = 2
# Renamed in click 8.2; `ocm` with no arguments prints its help.
_NO_ARGS_IS_HELP: type[click.UsageError] = getattr(
    click.exceptions,
    "NoArgsIsHelpError",
    getattr(click.exceptions, "NoArgsIsHelp", click.UsageError),
)
EXIT_INTERRUPTED = 130
EXIT_STATE = 7
#: Local trouble (full disk, read-only or forbidden files): exit 7 like a StateError.
_LOCAL_STATE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


if TYPE_CHECKING:
    from .. import AsyncManager, Manager
    from ..fronts import Records


class Context:
    """What every command needs: settings resolved once, and a lazily opened manager (the
    sync facade; commands that stream or can be interrupted use the async one)."""

    def __init__(self, opencode: str | None) -> None:
        self.opencode = opencode
        self._manager: Manager | None = None
        self._records: Records | None = None

    def settings(self, opencode: str | None = None) -> Settings:
        return Settings.load(opencode=opencode or self.opencode)

    def manager(self, opencode: str | None = None) -> Manager:
        from .. import Manager

        if self._manager is None or opencode:
            self._manager = Manager(self.settings(opencode))
        return self._manager

    def records(self) -> Records:
        """The stored records without the facade: what the read commands print (no event
        loop, no HTTP client); a read that needs a server takes `manager()` instead."""
        from ..fronts import Records

        if self._records is None:
            self._records = Records(self.settings())
        return self._records

    def amanager(self, opencode: str | None = None) -> AsyncManager:
        """An async facade for `asyncio.run` at this edge (start, run, wait, batch, monitor)."""
        from .. import AsyncManager

        return AsyncManager(self.settings(opencode))

    def close(self) -> None:
        if self._records is not None:
            self._records.close()
        if self._manager is not None:
            self._manager.close()


# name -> (module, attribute): commands are imported only when used, so `ocm ls` does not pay
# for the batch machinery (click's documented lazy-group pattern).
LAZY_COMMANDS = {
    "start": ("instances", "start"),
    "ls": ("instances", "ls"),
    "status": ("instances", "status"),
    "env": ("instances", "env"),
    "stop": ("instances", "stop"),
    "restart": ("instances", "restart"),
    "rm": ("instances", "rm"),
    "cleanup": ("instances", "cleanup"),
    "logs": ("instances", "logs"),
    "events": ("instances", "events"),
    "monitor": ("observe", "monitor"),
    "top": ("observe", "top"),
    "metrics": ("observe", "metrics"),
    "run": ("tasks", "run"),
    "wait": ("tasks", "wait"),
    "result": ("results", "result"),
    "results": ("results", "results"),
    "batch": ("batches", "batch"),
    "sessions": ("sessions", "sessions_cmd"),
    "session": ("sessions", "session"),
    "attach": ("sessions", "attach"),
    "api": ("sessions", "api"),
    "install": ("system", "install"),
    "doctor": ("system", "doctor"),
    "restore": ("system", "restore"),
    "demo": ("system", "demo"),
    "model-server": ("system", "model_server"),
    "worktrees": ("worktrees", "worktrees"),
    "mcp": ("agents", "mcp"),
    "dashboard": ("web", "dashboard"),
    "diff": ("compose", "diff"),
    "up": ("compose", "up"),
    "down": ("compose", "down"),
    "save": ("persist", "save"),
    "resurrect": ("persist", "resurrect"),
    "export": ("persist", "export"),
    "worktree": ("worktrees", "worktree"),
    "remote": ("remotes", "remote"),
    "cluster": ("cluster", "cluster"),
    "limits": ("limits", "limits"),
}


#: `ocm --help` lists the commands in these groups, in this order (like gh and kubectl),
#: not as one flat block of forty; every command is in exactly one (tests/cli/test_help.py).
COMMAND_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Basic commands", ("start", "ls", "status", "env", "attach", "logs", "stop", "restart", "rm",
               "cleanup")),
    ("Tasks", ("run", "wait", "result", "results", "batch", "sessions", "session", "api",
               "worktrees", "worktree", "limits")),
    ("Fleet files", ("diff", "up", "down", "save", "resurrect", "export")),
    ("Observe", ("monitor", "top", "events", "metrics")),
    ("Other hosts", ("remote", "cluster")),
    ("Fronts", ("dashboard", "mcp")),
    ("Setup", ("install", "doctor", "restore", "demo", "model-server")),
)  # fmt: skip

ROOT_EXAMPLES = """\
  ocm install                           # OpenCode from npm, once
  ocm start -n 3                        # three servers, healthy on return
  ocm run -i oc-1 "fix the failing test"
  ocm ls --json name,status,url         # chosen fields, for scripts
  ocm stop --all"""


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(LAZY_COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands by group, each with its one-line summary cut to the width."""
        width = max(len(name) for name in LAZY_COMMANDS)
        limit = formatter.width - 6 - width
        for title, names in COMMAND_GROUPS:
            rows = []
            for name in names:
                command = self.get_command(ctx, name)
                if command is not None and not command.hidden:
                    rows.append((name.ljust(width), command.get_short_help_str(limit)))
            with formatter.section(title):
                formatter.write_dl(rows, col_max=width)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Examples"):
            formatter.write_text("\b\n" + ROOT_EXAMPLES)
        formatter.write_paragraph()
        formatter.write_text("`ocm COMMAND --help` has each command's options and examples.")

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """A mistyped command names the ones it is close to, as click does for options."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in LAZY_COMMANDS:
            close = difflib.get_close_matches(name, LAZY_COMMANDS, n=3, cutoff=0.6)
            if close and not ctx.resilient_parsing:
                guesses = " or ".join(repr(c) for c in close)
                ctx.fail(f"No such command {name!r}. Did you mean {guesses}?")
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return None
        module = importlib.import_module(f"{__package__}.{target[0]}")
        command: click.Command = getattr(module, target[1])
        return command


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="ocm")
@click.option(
    "--opencode",
    "opencode",
    metavar="PATH|VERSION",
    envvar="OCM_OPENCODE",
    help="opencode binary to use, or a version `ocm install` put in $OCM_HOME (1.18.33 stays "
    "on 1.x) (default: $OCM_OPENCODE, PATH, ~/.opencode/bin, then the installs in $OCM_HOME, "
    "2.x first).",
)
@click.pass_context
def cli(ctx: click.Context, opencode: str | None) -> None:
    """Run and operate fleets of OpenCode servers.

    State lives in $OCM_HOME (default: your user state dir). Instances are referred to by
    name, port or URL. Every data command has --json for scripts.
    """
    state = Context(opencode)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _one_line(text: str) -> str:
    """ocm's own error line: no colour codes leaking from OpenCode, no line breaks."""
    return " ".join(strip_ansi(text).split())


def _clear_notice() -> None:
    loops = sys.modules.get(f"{__package__}.loops")
    if loops is not None:
        loops.clear_notice()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (the console script exits with it)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result: Any = cli.main(args=args, prog_name="ocm", standalone_mode=False)
    except _NO_ARGS_IS_HELP as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "")
        return 0
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "ocm"
        say(f"{command}: error: {_one_line(exc.format_message())} (see --help)")
        return EXIT_USAGE
    except (click.Abort, KeyboardInterrupt):
        _clear_notice()
        say("ocm: interrupted")
        return EXIT_INTERRUPTED
    except Interrupted as exc:  # Ctrl-C, and what the command undid: one line, like the others
        _clear_notice()
        say(f"ocm: {_one_line(str(exc))}")
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        say(f"ocm: error: {_one_line(exc.format_message())}")
        return exc.exit_code
    except StartError as exc:
        say(f"ocm: error: {_one_line(str(exc))}")
        if exc.log_tail:
            say("last log lines:", style="dim")
            for line in exc.log_tail:
                say("  " + line, style="dim")
        return exc.exit_code
    except OcmError as exc:
        from .. import FleetFileError

        # A fleet file's problems: one line each (FILE:LINE: [table] key: what is wrong).
        lines = str(exc).splitlines() if isinstance(exc, FleetFileError) else [str(exc)]
        for line in lines:
            say(f"ocm: error: {_one_line(line)}")
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the CLI's last line of defence: no tracebacks for users
        if isinstance(exc, OSError) and exc.errno in _LOCAL_STATE_ERRNOS:
            where = f" ({exc.filename})" if exc.filename else ""
            say(
                f"ocm: error: {exc.strerror}{where}; free some space or fix the permissions, "
                "then run the command again"
            )
            return EXIT_STATE
        say(
            f"ocm: internal error: {exc.__class__.__name__}: {_one_line(str(exc))} "
            "(please report it)"
        )
        return 1
    if isinstance(result, int):
        return result
    return 0


def run() -> None:
    sys.exit(main())
