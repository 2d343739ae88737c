"""Helpers for tests of code that starts OpenCode servers (ours, and your pipelines').

Give every process a test starts a marker in its environment (children inherit it, even
bash-tool commands in their own sessions); afterwards, `marked_processes` finds whatever is
still alive and `sweep` ends it. Use a variable not starting with OCM_: ocm does not pass
those on to servers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from ..instances.fleet import Fleet
from ..instances.launch import port_of
from ..models import InstanceSpec
from ..process import identity_of, marked
from ..settings import Settings

__all__ = ["fleet_of", "marked_processes", "sweep"]


def marked_processes(variable: str, value: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose environment has variable=value."""
    return marked(variable, value)


def sweep(variable: str, value: str, *, grace: float = 5.0) -> list[str]:
    """Wait up to `grace` seconds for marked processes to exit; kill and describe the rest."""
    deadline = time.monotonic() + grace
    leftovers = marked_processes(variable, value)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.1)  # polling for exit with a deadline
        leftovers = marked_processes(variable, value)
    described = []
    for proc in leftovers:
        try:
            described.append(f"{proc.pid} {' '.join(proc.cmdline()[:4])}")
            proc.kill()  # provably the caller's: it carries the marker
        except psutil.Error:
            continue
    return described


def fleet_of(home: Path, servers: Sequence[tuple[str, str, int]]) -> Fleet:
    """A fleet whose registry (under `home`) lists running instances, one per (name, url, pid):
    for tests of code that reads the fleet (monitor, dispatch, placement) against fake servers
    such as `opencode_manager.testing.sse`. Each pid must be a live process whose argv says
    `opencode serve`, as a server's does (`python -m opencode_manager.testing.sse serve` does:
    an `opencode...` program followed by `serve`)."""
    settings = Settings.load(home=home, environ={"HOME": str(home)})
    fleet = Fleet(settings, backups=False)
    registry = fleet.registry
    for name, url, pid in servers:
        server = identity_of(pid)
        if server is None:
            raise ValueError(f"no process {pid}")
        with registry.transaction() as db:
            registry.reserve(db, InstanceSpec(name=name, dir=str(home)), port=None)
        registry.server_spawned(name, server)
        registry.mark_running(name, url=url, port=port_of(url), version="fake")
    return fleet
