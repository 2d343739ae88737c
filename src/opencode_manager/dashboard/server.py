"""Serving the dashboard: where it listens, its login link, and the uvicorn loop."""

from __future__ import annotations

import html
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import Settings, UsageError
from ..fronts import listener, load_secret, serve_app
from .app import Dashboard
from .auth import TOKEN_FILE

DEFAULT_PORT = 8766
OPENER_FILE = "dashboard-open.html"
LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Served:
    url: str
    link: str = field(repr=False)  # with the login token: for the person who started it
    token_path: str
    created: bool


def check_address(host: str, port: int, *, insecure: bool) -> None:
    if not 0 <= port <= 65535:
        raise UsageError(f"invalid --port {port}: expected 0 (any free port) to 65535")
    if host in LOOPBACK:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        raise UsageError(f"--host {host}: use 127.0.0.1 or localhost for loopback")
    if not insecure:
        raise UsageError(
            f"--host {host} would let other machines reach the dashboard, which starts and "
            "stops servers and reads every session over plain HTTP; add --insecure if that "
            "network is yours alone"
        )


def allowed_hosts(host: str) -> list[str]:
    """The Host headers we answer (DNS rebinding: a page elsewhere naming our address)."""
    return sorted({host, *LOOPBACK})


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    insecure: bool = False,
    rotate_token: bool = False,
    ready: Callable[[Served], None] | None = None,
) -> None:
    """Serve the dashboard until SIGINT or SIGTERM. A taken port is a ConflictError before
    anything else happens."""
    check_address(host, port, insecure=insecure)
    sock = listener(host, port)
    try:
        token = load_secret(settings, TOKEN_FILE, "the dashboard token", rotate=rotate_token)
        url = f"http://{host}:{sock.getsockname()[1]}"
        served = Served(url, f"{url}/login?token={token.value}", str(token.path), token.created)
        app = Dashboard(settings, token.value).app(allowed_hosts(host))
        announce = (lambda: ready(served)) if ready is not None else None
        serve_app(app, sock, ready=announce, lifespan=True, what=f"the dashboard on {url}")
    finally:
        sock.close()


def opener(settings: Settings, link: str) -> str:
    """A file:// URL that redirects to the sign-in link, for a browser to open: the token
    stays out of the browser's command line (what `ps` shows), as Jupyter does it. The file
    is 0600 in the private $OCM_HOME."""
    path = settings.home / OPENER_FILE
    page = (
        '<!doctype html><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0; url={html.escape(link, quote=True)}">'
        "<title>ocm dashboard</title><p>Opening the dashboard…"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(page)
    return path.as_uri()
