"""Listening sockets for ocm's own servers (the scripted model, metrics): bound before
anything says "serving", and a port that is taken is a clear error, not a traceback."""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .errors import ConflictError, OcmError, UsageError

if TYPE_CHECKING:
    import uvicorn


def bind_error(host: str, port: int, exc: OSError) -> OcmError:
    """What to tell the user when binding host:port failed."""
    if exc.errno == errno.EADDRINUSE:
        return ConflictError(f"port {port} is in use on {host}; choose another port")
    if exc.errno == errno.EADDRNOTAVAIL:
        return UsageError(f"cannot listen on {host}: not an address of this machine")
    if exc.errno == errno.EACCES:
        return ConflictError(f"port {port} needs privileges; choose one above 1023")
    return OcmError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def listener(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A socket listening on host:port (0: any free port), or the error from `bind_error`."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on {host}: {exc.strerror}") from exc
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise bind_error(host, port, exc) from exc
    return sock


def serve_app(
    app: Any,
    sock: socket.socket,
    *,
    ready: Callable[[], None] | None = None,
    lifespan: bool = False,
    what: str = "the server",
    grace: float = 3.0,
) -> None:
    """Serve an ASGI app on a bound socket with uvicorn until SIGINT or SIGTERM, then return
    (exit 0, no traceback). `ready` is called once it listens. uvicorn's warnings go to
    stderr; there is no access log (a login link's token must not land in a log)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        log_config=None,  # stdout stays quiet
        lifespan="on" if lifespan else "off",
        ws="none",
        timeout_graceful_shutdown=int(grace),
    )
    try:
        _server_class()(config, ready).run(sockets=[sock])
    except SystemExit:  # uvicorn's way of saying the app did not start
        raise OcmError(f"{what} failed to start") from None


def _server_class() -> Callable[[uvicorn.Config, Callable[[], None] | None], uvicorn.Server]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, saying when it listens, and taking SIGINT/SIGTERM as a plain
        stop: uvicorn raises the signal again once it has shut down, which would end `ocm`
        with 130 or -15 instead of 0."""

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

    return Server
