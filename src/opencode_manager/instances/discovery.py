"""Finding `opencode serve` processes that ocm did not start (read-only: never signalled)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ForeignServer:
    """An OpenCode server someone else started."""

    pid: int
    create_time: float
    port: int
    hostname: str
    cmdline: tuple[str, ...]

    @property
    def url(self) -> str:
        host = self.hostname
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def looks_like_server(cmdline: Iterable[str]) -> bool:
    """`opencode serve ...` (or `opencode web`), directly or through a node/bun wrapper."""
    args = list(cmdline)
    for i, arg in enumerate(args[:3]):
        base = os.path.basename(arg)
        if base.startswith("opencode") and any(a in ("serve", "web") for a in args[i + 1 :]):
            return True
    return False


def find_foreign(exclude_pids: set[int]) -> list[ForeignServer]:
    """Listening OpenCode servers not in `exclude_pids` (the ones we manage)."""
    found: list[ForeignServer] = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        try:
            info = proc.info
            if info["pid"] in exclude_pids or not info["cmdline"]:
                continue
            if not looks_like_server(info["cmdline"]):
                continue
            listens = [c for c in proc.net_connections(kind="inet") if c.status == "LISTEN"]
        except (psutil.Error, OSError):
            continue
        seen: set[int] = set()
        for conn in listens:
            if conn.laddr.port in seen:
                continue
            seen.add(conn.laddr.port)
            found.append(
                ForeignServer(
                    pid=info["pid"],
                    create_time=info["create_time"],
                    port=conn.laddr.port,
                    hostname=conn.laddr.ip,
                    cmdline=tuple(info["cmdline"]),
                )
            )
    return found
