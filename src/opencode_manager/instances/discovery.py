"""Finding OpenCode servers that ocm did not start (read-only: never signalled).

They are `opencode serve` (or `web`) processes that listen on a TCP port, of either line. One
of them may be the user's own OpenCode 2 background service (`opencode service start` runs
`.../opencode.exe serve --service`, detached, and registers it in
`$XDG_STATE_HOME/opencode/service.json`): it is marked as such, and like every foreign server
it is listed and never signalled. Its line is found by asking it (instances/probe.py), since a
foreign server's password is not ours.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class ForeignServer:
    """An OpenCode server someone else started."""

    pid: int
    create_time: float
    port: int
    hostname: str
    cmdline: tuple[str, ...]
    exe: str | None = None  # its executable (to ask its version), when readable
    service: bool = False  # the user's OpenCode 2 background service
    version: str | None = None  # as its service registration says

    @property
    def url(self) -> str:
        host = self.hostname
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class Service:
    """One registration of the OpenCode 2 background service (the file also holds its
    password, which is never kept here)."""

    pid: int
    url: str | None
    version: str | None
    path: Path


def looks_like_server(cmdline: Iterable[str]) -> bool:
    """`opencode serve ...` (or `opencode web`), directly or through a node/bun wrapper.
    2.x's names match too: `opencode`, `opencode2`, `opencode.exe`."""
    args = list(cmdline)
    for i, arg in enumerate(args[:3]):
        base = os.path.basename(arg)
        if base.startswith("opencode") and any(a in ("serve", "web") for a in args[i + 1 :]):
            return True
    return False


def is_service(cmdline: Iterable[str]) -> bool:
    """`opencode serve --service`: how `opencode service start` runs the background service."""
    args = list(cmdline)
    return "--service" in args and "serve" in args


def read_services(state_home: Path) -> list[Service]:
    """The service registrations under `state_home/opencode` (`service.json`, and
    `service-<channel>.json` for other channels); unreadable ones are skipped."""
    found: list[Service] = []
    for path in sorted((state_home / "opencode").glob("service*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            continue
        url, version = data.get("url"), data.get("version")
        found.append(
            Service(
                pid=data["pid"],
                url=url if isinstance(url, str) else None,
                version=version if isinstance(version, str) else None,
                path=path,
            )
        )
    return found


def find_foreign(
    exclude_pids: set[int], services: Mapping[int, Service] | None = None
) -> list[ForeignServer]:
    """Listening OpenCode servers not in `exclude_pids` (the ones we manage); `services`:
    the background service registrations, by PID."""
    registered = services or {}
    found: list[ForeignServer] = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time", "exe"]):
        try:
            info = proc.info
            if info["pid"] in exclude_pids or not info["cmdline"]:
                continue
            if not looks_like_server(info["cmdline"]):
                continue
            listens = [c for c in proc.net_connections(kind="inet") if c.status == "LISTEN"]
        except (psutil.Error, OSError):
            continue
        entry = registered.get(info["pid"])
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
                    exe=info.get("exe") or None,
                    service=entry is not None or is_service(info["cmdline"]),
                    version=entry.version if entry is not None else None,
                )
            )
    return found
