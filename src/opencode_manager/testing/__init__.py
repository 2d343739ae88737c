"""Helpers for tests of code that starts OpenCode servers (ours, and your pipelines').

Give every process a test starts a marker in its environment (children inherit it, even
bash-tool commands in their own sessions); afterwards, `marked_processes` finds whatever is
still alive and `sweep` ends it. Use a variable not starting with OCM_: ocm does not pass
those on to servers.
"""

from __future__ import annotations

import time

import psutil

from ..process import marked

__all__ = ["marked_processes", "sweep"]


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
