"""`ocm dashboard`: the fleet in a browser."""

from __future__ import annotations

import contextlib
import signal
import webbrowser
from typing import TYPE_CHECKING

import click

from .main import Context
from .output import err

if TYPE_CHECKING:
    from ..dashboard.server import Served

pass_state = click.make_pass_decorator(Context)


@click.command(name="dashboard")
@click.option("--port", type=int, default=8766, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a --host other machines can reach (plain HTTP: only on a network of yours).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the login link in a browser.")
@click.option(
    "--rotate-token", is_flag=True, help="Replace the login token (old links stop working)."
)
@pass_state
def dashboard(
    state: Context, port: int, host: str, insecure: bool, open_browser: bool, rotate_token: bool
) -> None:
    """Serve a web dashboard of the fleet: instances, live events, tasks and batches.

    It listens on 127.0.0.1 and prints a login link; the link's token (kept 0600 in
    $OCM_HOME/dashboard-token) is exchanged for a session cookie. Ctrl-C stops it.

    \b
    Examples:
      ocm dashboard
      ocm dashboard --port 9000 --open
    """
    from ..dashboard.server import opener, serve

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def ready(served: Served) -> None:
        err.print(f"ocm dashboard: serving {served.url}", markup=False)
        err.print(f"ocm dashboard: sign in with {served.link}", markup=False, soft_wrap=True)
        if open_browser:  # through a 0600 file: the token stays out of the browser's argv
            webbrowser.open(opener(state.settings(), served.link))

    with contextlib.suppress(KeyboardInterrupt):
        serve(state.settings(), host=host, port=port, insecure=insecure,
              rotate_token=rotate_token, ready=ready)  # fmt: skip
