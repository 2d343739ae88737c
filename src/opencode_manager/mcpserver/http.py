"""`ocm mcp --http`: the MCP server over streamable HTTP, on loopback only, behind a token.

The token is made once (`secrets.token_urlsafe(32)`) and kept in $OCM_HOME/mcp-token, mode
0600; a request without `Authorization: Bearer <token>` gets 401 before it reaches the SDK.
The SDK's own Host/Origin checks stay on too, so a page that DNS rebinding pointed at
127.0.0.1 is refused whatever it sends. The socket is bound before anything else happens: a
taken port is a ConflictError, and no token is made for a server that never ran.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import OcmError, Settings, StateError, UsageError, listener

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


@dataclass(frozen=True)
class Token:
    """The bearer token, where it is kept, and whether this call made it (show it once)."""

    value: str = field(repr=False)
    path: Path
    created: bool


def token_path(settings: Settings) -> Path:
    return settings.home / TOKEN_FILE


def load_token(settings: Settings, *, rotate: bool = False) -> Token:
    """The token in $OCM_HOME/mcp-token; a new one when it is missing or empty, or `rotate`."""
    settings.ensure_home()  # OCM_HOME private (0700) before a secret goes in it
    path = token_path(settings)
    current = None if rotate else _read(path)
    if current:
        return Token(current, path, created=False)
    value = secrets.token_urlsafe(32)
    if _store(path, value, replace=rotate or current is not None):
        return Token(value, path, created=True)
    theirs = _read(path)  # another `ocm mcp --http` made it first: theirs stands
    if not theirs:
        raise StateError(f"the MCP token {path} is empty; delete it to get a new one")
    return Token(theirs, path, created=False)


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read the MCP token {path}: {exc.strerror or exc}") from exc


def _store(path: Path, value: str, *, replace: bool) -> bool:
    """Write 0600 from the first byte; unless `replace`, only if no token is there (False
    then). The link makes the whole file appear at once: nobody reads half a token."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    except OSError as exc:
        raise StateError(f"cannot store the MCP token {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


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
    ready: Callable[[str, Token], None] | None = None,
) -> None:
    """Serve `server` at http://host:port/mcp until SIGINT or SIGTERM, then return.

    `ready` gets the URL (with the port bound, when 0 was asked) and the token once the server
    listens. A taken port raises ConflictError before a token is made or read.
    """
    check_address(host, port)
    sock = listener(host, port)
    # The SDK logs every session at INFO on stderr; `ready` says what a user needs to know.
    logging.getLogger("mcp").setLevel(logging.WARNING)
    try:
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{sock.getsockname()[1]}{PATH}"
        token = load_token(settings, rotate=rotate_token)
        config = uvicorn.Config(
            build_app(server, token.value),
            log_level="warning",
            access_log=False,
            log_config=None,  # uvicorn's warnings go to stderr; stdout stays quiet
            lifespan="on",  # runs the SDK's session manager
            ws="none",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
        announce = (lambda: ready(url, token)) if ready is not None else None
        try:
            _Server(config, announce).run(sockets=[sock])
        except SystemExit:  # uvicorn's way of saying the app did not start
            raise OcmError(f"the MCP server on {url} failed to start") from None
    finally:
        sock.close()


class _Server(uvicorn.Server):
    """uvicorn's server, saying when it listens, and taking SIGINT/SIGTERM as a plain stop:
    uvicorn raises the signal again once it has shut down, which would end `ocm` with 130
    or -15 instead of 0."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._ready is not None:
            self._ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
