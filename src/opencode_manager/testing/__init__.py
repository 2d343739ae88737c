"""Helpers for tests of code that starts OpenCode servers (ours, and your pipelines').

Give every process a test starts a marker in its environment (children inherit it, even
bash-tool commands in their own sessions); afterwards, `marked_processes` finds whatever is
still alive and `sweep` ends it. Use a variable not starting with OCM_: ocm does not pass
those on to servers.

Without any server: `testing.opencode.FakeOpencode` plays OpenCode 1.x over
`httpx.MockTransport`, `fleet_of(..., transport=...)` records instances served by it, and a
`StandIn` process is what their registry rows point at.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from .. import process
from ..instances.fleet import Fleet
from ..instances.launch import port_of
from ..lines import PINNED_VERSIONS, Line
from ..models import InstanceSpec
from ..process import identity_of, marked
from ..settings import Settings

if TYPE_CHECKING:
    import httpx

__all__ = ["StandIn", "fleet_of", "marked_processes", "sweep"]


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


def fleet_of(
    home: Path,
    servers: Sequence[tuple[str, str, int]],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    directory: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Fleet:
    """A fleet whose registry (under `home`) lists running instances, one per (name, url, pid):
    for tests of code that reads the fleet (monitor, dispatch, batches, placement) against
    fake servers, over the network (`opencode_manager.testing.sse`) or in-process
    (`transport`: e.g. `testing.opencode.transport(FakeOpencode(url), ...)`). Each pid must
    be a live process whose argv says `opencode serve`, as a server's does (`StandIn`, or
    `python -m opencode_manager.testing.sse serve`: an `opencode...` program, then `serve`);
    several instances may share one. `directory`: the instances' project (default `home`).
    `environ`: settings variables (e.g. `OCM_HTTP_TIMEOUT`)."""
    settings = Settings.load(home=home, environ={"HOME": str(home), **(environ or {})})
    fleet = Fleet(settings, backups=False, transport=transport)
    registry = fleet.registry
    for name, url, pid in servers:
        server = identity_of(pid)
        if server is None:
            raise ValueError(f"no process {pid}")
        with registry.transaction() as db:
            spec = InstanceSpec(name=name, dir=directory or str(home))
            registry.reserve(db, spec, port=None)
        registry.server_spawned(name, server)
        registry.mark_running(name, url=url, port=port_of(url), version=PINNED_VERSIONS[Line.V1])
    return fleet


class StandIn:
    """A live process that stands for the servers of a fleet whose HTTP is faked (its argv
    reads `opencode... serve`; it does nothing, and ends when `close`d or when this process
    ends). Environment: `env` (default: this process's)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "opencode_manager.testing.standin", "serve"],
            stdin=subprocess.PIPE, env=dict(env) if env is not None else None,
        )  # fmt: skip
        self.pid = self._proc.pid
        deadline = time.monotonic() + 10.0
        while not process.is_server_argv(_argv(self.pid)):  # until its argv says so
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the stand-in process did not start")
            time.sleep(0.005)  # polling for the child's exec, with a deadline

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(10)

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _argv(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []
