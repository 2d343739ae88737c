"""`ocm mcp`: serve the fleet to AI agents over MCP (stdio)."""

from __future__ import annotations

import click

from .. import BinaryError
from .main import Context

pass_state = click.make_pass_decorator(Context)


@click.command(name="mcp")
@click.option("--read-only", is_flag=True, help="Only the tools that read (no start, run, stop).")
@click.option("--no-destructive", is_flag=True, help="Leave out the tools that stop or abort work.")
@pass_state
def mcp(state: Context, read_only: bool, no_destructive: bool) -> None:
    """Serve the fleet as MCP tools on stdio, for AI agents (needs the `mcp` extra).

    Nothing but the protocol goes to stdout. Destructive tools want `confirm: true`.

    \b
    Examples:
      ocm mcp
      ocm mcp --read-only
      # in opencode.json: "mcp": {"ocm": {"type": "local", "command": ["ocm", "mcp"]}}
    """
    try:
        from ..mcpserver.tools import build_server
    except ImportError as exc:
        raise BinaryError(
            f"ocm mcp needs the MCP SDK ({exc.name} is missing): "
            "pip install 'opencode-manager[mcp]'"
        ) from None
    server = build_server(state.settings(), read_only=read_only, destructive=not no_destructive)
    server.run()  # stdio until the client closes it
