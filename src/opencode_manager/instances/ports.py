"""Port checks and allocation within a range.

Allocation runs inside a registry write transaction (the cross-process lock), skips ports that
other instances have claimed, and test-binds each candidate, so concurrent `ocm start` calls
never pick the same port.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

from ..errors import ConflictError


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET


def port_free(host: str, port: int) -> bool:
    """Can a server bind host:port right now? (Same options as a typical server: REUSEADDR.)"""
    bind_host = host.strip("[]")
    if bind_host == "localhost":
        bind_host = "127.0.0.1"
    with contextlib.closing(socket.socket(_family(bind_host), socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError:
            return False
    return True


#: OpenCode's own default: with `--port 0` it takes this one when free. ocm's automatic
#: ports never do, so a user's own `opencode` keeps it and instances do not race for it.
OPENCODE_DEFAULT_PORT = 4096


def ephemeral_port(host: str) -> int:
    """A port the OS says is free now (its ephemeral range; never OpenCode's default)."""
    bind_host = host.strip("[]")
    if bind_host == "localhost":
        bind_host = "127.0.0.1"
    for _ in range(8):
        with contextlib.closing(socket.socket(_family(bind_host), socket.SOCK_STREAM)) as sock:
            sock.bind((bind_host, 0))
            port = int(sock.getsockname()[1])
        if port != OPENCODE_DEFAULT_PORT:
            return port
    return 0  # let the server choose


def choose_port(
    low: int,
    high: int,
    claimed: set[int],
    *,
    is_free: Callable[[int], bool],
) -> int:
    """The first port in [low, high] nobody claimed and that binds (pure given `is_free`)."""
    for port in range(low, high + 1):
        if port not in claimed and is_free(port):
            return port
    raise ConflictError(
        f"port range {low}-{high} is exhausted: every port is taken; widen --port-range "
        "or stop some instances"
    )
