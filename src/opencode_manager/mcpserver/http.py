"""`ocm mcp --http`: the MCP server over streamable HTTP, on loopback only, behind a token.

The token is made once (`secrets.token_urlsafe(32)`) and kept in $OCM_HOME/mcp-token, mode
0600; a request without `Authorization: Bearer <token>` gets 401 before it reaches the SDK.
The SDK's own Host/Origin checks stay on too, so a page that DNS rebinding pointed at
127.0.0.1 is refused whatever it sends. The socket is bound before anything else happens: a
taken port is a ConflictError, and no token is made for a server that never ran.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from pathlib import Path

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import Settings, UsageError
from ..fronts import Secret, listener, load_secret, serve_app

PATH = "/mcp"
TOKEN_FILE = "mcp-token"  # noqa: S105 - a file name
#: What --host accepts: the names the Host check below lets through.
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
#: Host and Origin headers the SDK accepts (its DNS-rebinding protection).
TRANSPORT_SECURITY = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
    allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
)
#: After Ctrl-C, open streams get this long to finish before they are cut.
SHUTDOWN_GRACE_S = 3


Token = Secret  # the bearer token (value, path, created)


def token_path(settings: Settings) -> Path:
    return settings.home / TOKEN_FILE


def load_token(settings: Settings, *, rotate: bool = False) -> Secret:
    """The token in $OCM_HOME/mcp-token; a new one when it is missing or empty, or `rotate`."""
    return load_secret(settings, TOKEN_FILE, "the MCP token", rotate=rotate)


class BearerAuth:
    """Pure ASGI: a request without `Authorization: Bearer <token>` gets 401 and goes no
    further (compared in constant time); lifespan events pass through."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        given = _bearer(scope)
        if given is not None and hmac.compare_digest(given, self._token):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await _refuse(send, wrong=given is not None)
        else:  # websocket: not served, and certainly not without the token
            await send({"type": "websocket.close", "code": 1008})


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer" and credentials.strip():
                return bytes(credentials.strip())
            return None
    return None


async def _refuse(send: Send, *, wrong: bool) -> None:
    challenge = b'Bearer realm="ocm"' + (b', error="invalid_token"' if wrong else b"")
    description = f"send Authorization: Bearer <the token in $OCM_HOME/{TOKEN_FILE}>"
    error = "invalid_token" if wrong else "unauthorized"
    body = json.dumps({"error": error, "error_description": description}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_app(server: MCPServer, token: str) -> ASGIApp:
    """Streamable HTTP at /mcp, behind the token and the SDK's Host/Origin checks."""
    app = server.streamable_http_app(
        streamable_http_path=PATH, transport_security=TRANSPORT_SECURITY
    )
    return BearerAuth(app, token)


def check_address(host: str, port: int) -> None:
    """Loopback only: the tools start processes and read every session."""
    if host not in LOOPBACK_HOSTS:
        raise UsageError(
            f"--host {host} is not allowed: ocm mcp --http listens on loopback only "
            f"({', '.join(LOOPBACK_HOSTS)})"
        )
    if not 0 <= port <= 65535:
        raise UsageError(f"invalid --port {port}: expected 0 (any free port) to 65535")


def serve(
    server: MCPServer,
    settings: Settings,
    *,
    host: str,
    port: int,
    rotate_token: bool = False,
    ready: Callable[[str, Secret], None] | None = None,
) -> None:
    """Serve `server` at http://host:port/mcp until SIGINT or SIGTERM, then return.

    `ready` gets the URL (with the port bound, when 0 was asked) and the token once the server
    listens. A taken port raises ConflictError before a token is made or read.
    """
    check_address(host, port)
    sock = listener(host, port)
    try:
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{sock.getsockname()[1]}{PATH}"
        token = load_token(settings, rotate=rotate_token)
        announce = (lambda: ready(url, token)) if ready is not None else None
        # lifespan on: it runs the SDK's session manager
        serve_app(build_app(server, token.value), sock, ready=announce, lifespan=True,
                  what=f"the MCP server on {url}", grace=SHUTDOWN_GRACE_S)  # fmt: skip
    finally:
        sock.close()
