"""How busy the machine is, for deadlines that scale and for errors that say what was slow.

A fixed deadline that is generous on an idle machine turns into a failure at a load average
of 20 on 2 cores (issue 26: `opencode --version` timed out after 30 s during `ocm install`).
A wait that guards against a hang, not against slowness, is stretched by `factor()`; an error
that gives up names the load with `describe()`, so a user can tell "slow" from "broken".
"""

from __future__ import annotations

import os

#: A deadline is stretched at most this much: past it, waiting longer hides a real hang.
MAX_FACTOR = 4.0


def _cores() -> int:
    return os.cpu_count() or 1


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # not on every platform
        return None


def factor(load: float | None = None, cores: int | None = None) -> float:
    """How much longer than on an idle machine a wait should be: the run queue per core
    (1 when it is shorter than the cores), at most MAX_FACTOR. Pure with arguments."""
    load = _load() if load is None else load
    if load is None:
        return 1.0
    per_core = load / (cores or _cores())
    return min(MAX_FACTOR, max(1.0, per_core))


def scaled(seconds: float) -> float:
    """`seconds` on an idle machine, stretched for the current load."""
    return seconds * factor()


def describe(load: float | None = None, cores: int | None = None) -> str:
    """'load average 19.8 on 2 cores' (what made it slow, as far as the machine knows)."""
    load = _load() if load is None else load
    cores = cores or _cores()
    if load is None:
        return f"{cores} cores"
    return f"load average {load:.1f} on {cores} core{'s' if cores != 1 else ''}"
