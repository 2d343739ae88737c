"""Warm a server that just answered its health check, so its first prompt is not its slowest.

A fresh ``opencode serve`` answers ``/global/health`` long before it can serve a prompt: the
first request naming a project directory bootstraps that directory (config layers, plugins,
agents), and the first use of the provider catalogue parses the models.dev snapshot and builds
every provider. Measured on OpenCode 1.18.33 with the scripted model, that was most of a first
task's extra time (1.3 s against 0.15 s warm). The keeper therefore makes these read-only
calls, each naming the instance's directory, before it reports the instance `running`:

* ``GET /config`` bootstraps the directory (its config layers and plugins);
* ``GET /agent`` resolves the agents;
* ``GET /config/providers`` loads the catalogue and builds the configured providers.

``GET /provider`` also warmed the catalogue once, but it adds nothing after
``/config/providers`` and costs about 0.5 s more: it serialises the whole catalogue (6 MB).

What remains of a first task after this (about 0.6 s on this machine) is the session runner's
own boot on the first prompt (its file watcher, tools and location services) and the first
model call. No read-only call reaches the runner on 1.18.33: ``/api/location``,
``/api/session/ID/context`` and ``/experimental/tool/ids`` boot the HTTP routes' copy of those
services, not the runner's; a ``noReply`` message and a session shell command did not either
(measured, bench/NOTES.md). A warm-up must never spend the user's tokens or write to their
sessions, so the rest is left to the first prompt.

Nothing here may fail a start: every step has the time left of one budget
(``OCM_WARMUP_TIMEOUT``), a step that fails or times out is reported and skipped, and a budget
of 0 turns the warm-up off. The catalogue's background refresh from models.dev is not waited
for (offline it cannot succeed; OpenCode falls back to its built-in snapshot).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from ..deadline import within
from ..errors import OcmError

#: The read-only calls, in order (each also gets ``?directory=``).
STEPS = ("/config", "/agent", "/config/providers")

#: GET a path within a timeout (the keeper's `Probe.get` bound to the server's endpoint).
Get = Callable[[str, float], Awaitable[object]]


@dataclass(frozen=True)
class Warmup:
    """How a warm-up went."""

    seconds: float
    done: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # "PATH: reason"
    timed_out: bool = False

    def describe(self) -> str:
        """One line for the keeper's log."""
        text = f"warmed up in {self.seconds:.2f} s ({len(self.done)}/{len(STEPS)} calls)"
        if self.timed_out:
            text += "; budget spent, the rest is left to the first prompt"
        if self.failed:
            text += "; failed: " + "; ".join(self.failed)
        return text


def step_paths(directory: str) -> list[str]:
    """The warm-up's request targets for a project directory."""
    query = "directory=" + quote(directory, safe="")
    return [f"{path}?{query}" for path in STEPS]


async def warm_up(get: Get, directory: str, *, budget: float, clock: Callable[[], float]) -> Warmup:
    """Make the warm-up calls in order, all within `budget` seconds; never raises OcmError."""
    began = clock()
    deadline = began + budget
    done: list[str] = []
    failed: list[str] = []
    for path, target in zip(STEPS, step_paths(directory), strict=True):
        left = deadline - clock()
        if left <= 0:
            return Warmup(clock() - began, tuple(done), tuple(failed), timed_out=True)
        try:
            await within(get(target, left), left)
        except (OcmError, asyncio.TimeoutError) as exc:
            if deadline - clock() <= 0:
                return Warmup(clock() - began, tuple(done), tuple(failed), timed_out=True)
            failed.append(f"{path}: {exc or exc.__class__.__name__}")
            continue
        done.append(path)
    return Warmup(clock() - began, tuple(done), tuple(failed))
