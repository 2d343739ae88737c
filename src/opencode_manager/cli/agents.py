"""`ocm mcp`: serve the fleet to AI agents over MCP (stdio, or streamable HTTP on loopback)."""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING

import click

from .. import BinaryError, UsageError
from .main import Context
from .output import err

if TYPE_CHECKING:
    from ..fronts import Secret as Token

pass_state = click.make_pass_decorator(Context)

#: `ocm mcp --http` without --port.
DEFAULT_HTTP_PORT = 8765


@click.command(name="mcp")
@click.option("--read-only", is_flag=True, help="Only the tools that read (no start, run, stop).")
@click.option("--no-destructive", is_flag=True, help="Leave out the tools that stop or abort work.")
@click.option(
    "--http",
    "http",
    is_flag=True,
    help="Serve streamable HTTP at /mcp on loopback instead of stdio, behind a bearer token.",
)
@click.option(
    "--port",
    type=int,
    metavar="PORT",
    help=f"Port for --http (default: {DEFAULT_HTTP_PORT}; 0 picks a free one).",
)
@click.option(
    "--host",
    metavar="HOST",
    help="Address for --http: 127.0.0.1 (default), ::1 or localhost; nothing else.",
)
@click.option(
    "--rotate-token",
    is_flag=True,
    help="With --http: replace the token (clients holding the old one are refused).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    metavar="LEVEL",
    help="What the MCP SDK and the HTTP clients log on stderr: debug, info (every "
    "request), warning (the default: nothing in normal use) or error.",
)
@pass_state
def mcp(
    state: Context,
    read_only: bool,
    no_destructive: bool,
    http: bool,
    port: int | None,
    host: str | None,
    rotate_token: bool,
    log_level: str,
) -> None:
    """Serve the fleet as MCP tools for AI agents (needs the `mcp` extra).

    On stdio, nothing but the protocol goes to stdout. With --http: streamable HTTP at
    http://127.0.0.1:8765/mcp; every request needs `Authorization: Bearer TOKEN`, the token
    being made once, kept in $OCM_HOME/mcp-token (mode 0600) and shown on stderr only when
    made. Destructive tools want `confirm: true`. Ctrl-C stops the server.

    \b
    Examples:
      ocm mcp
      ocm mcp --read-only
      ocm mcp --http --port 8765
      # opencode.json (timeout in ms: task_run waits up to 50 s, OpenCode 5 s):
      {"mcp": {"ocm": {"type": "local", "command": ["ocm", "mcp"],
                       "timeout": 120000}}}
    """
    if not http and (port is not None or host is not None or rotate_token):
        raise UsageError("--port, --host and --rotate-token go with --http")
    try:
        from ..mcpserver import http as web
        from ..mcpserver.tools import build_server
    except ImportError as exc:
        raise BinaryError(
            f"ocm mcp needs the MCP SDK ({exc.name} is missing): "
            "pip install 'opencode-manager[mcp]'"
        ) from None
    settings = state.settings()
    server = build_server(
        settings, read_only=read_only, destructive=not no_destructive, log_level=log_level.lower()
    )
    if not http:
        server.run()  # stdio until the client closes it
        return
    # Until the server takes them over: SIGTERM stops like Ctrl-C, and Ctrl-C works even in a
    # background job (started with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def ready(url: str, token: Token) -> None:
        if token.created:
            err.print(f"ocm mcp: new token, shown once: {token.value}", markup=False)
        err.print(f"ocm mcp: serving {url} (token in {token.path})", markup=False)

    with contextlib.suppress(KeyboardInterrupt):  # a stop before the server took the signals
        web.serve(
            server,
            settings,
            host=host or "127.0.0.1",
            port=DEFAULT_HTTP_PORT if port is None else port,
            rotate_token=rotate_token,
            ready=ready,
        )
