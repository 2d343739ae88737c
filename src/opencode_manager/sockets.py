"""Listening sockets for ocm's own servers (the scripted model, metrics): bound before
anything says "serving", and a port that is taken is a clear error, not a traceback."""

from __future__ import annotations

import errno
import socket

from .errors import ConflictError, OcmError, UsageError


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
