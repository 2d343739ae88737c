"""Restart decisions (pure: no processes, no clocks of their own).

Like PM2's exponential backoff restart: the first restart waits 100 ms, each further one 1.5
times longer, capped at 15 s; a run that stayed up 30 s resets the delay. Independently, a
flapping limit (more than `max_restarts` restarts within `window` seconds) puts the instance in
`errored`: it is no longer restarted until someone restarts it by hand.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

BASE_DELAY = 0.1
FACTOR = 1.5
MAX_DELAY = 15.0
STABLE_AFTER = 30.0


class RestartPolicy(str, enum.Enum):
    NEVER = "never"
    ON_FAILURE = "on-failure"  # restart after a crash, a failed health check or a recycle
    ALWAYS = "always"  # also after a clean exit (code 0)


class ExitKind(str, enum.Enum):
    CLEAN = "clean"  # exited with code 0 on its own
    CRASHED = "crashed"  # non-zero exit or killed by a signal
    UNHEALTHY = "unhealthy"  # stopped answering its health check; we ended it
    RECYCLED = "recycled"  # ended on purpose (memory or age limit)


@dataclass(frozen=True)
class Limits:
    """Per-instance supervision settings (part of the instance spec)."""

    policy: RestartPolicy = RestartPolicy.ON_FAILURE
    max_restarts: int = 10  # within `window` seconds, before giving up (errored)
    window: float = 60.0
    health_interval: float = 5.0
    health_timeout: float = 3.0
    health_misses: int = 3
    max_memory: int | None = None  # bytes (server and children)
    max_age: float | None = None  # seconds
    recycle_grace: float = 60.0  # how long a busy session may finish before a recycle


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay: float = 0.0
    errored: str | None = None  # why we give up, when we do


def backoff_delay(consecutive: int) -> float:
    """Delay before the n-th consecutive restart (n >= 1): 0.1, 0.15, 0.225, ... <= 15 s."""
    if consecutive < 1:
        return 0.0
    return min(BASE_DELAY * FACTOR ** (consecutive - 1), MAX_DELAY)


def next_consecutive(previous: int, uptime: float) -> int:
    """Consecutive-restart count after a run that lasted `uptime` seconds."""
    return 1 if uptime >= STABLE_AFTER else previous + 1


def decide(
    limits: Limits,
    kind: ExitKind,
    *,
    consecutive: int,
    recent_restarts: Sequence[float],
    now: float,
) -> Decision:
    """What to do after the server ended.

    `consecutive` is the restart this would be (see next_consecutive); `recent_restarts` are the
    times of earlier restarts, for the flapping limit.
    """
    if limits.policy is RestartPolicy.NEVER:
        return Decision(restart=False)
    if kind is ExitKind.CLEAN and limits.policy is RestartPolicy.ON_FAILURE:
        return Decision(restart=False)
    in_window = [t for t in recent_restarts if now - t <= limits.window]
    if len(in_window) >= limits.max_restarts:
        return Decision(
            restart=False,
            errored=f"restarted {len(in_window)} times within {limits.window:g} s "
            f"(--max-restarts {limits.max_restarts}); giving up",
        )
    return Decision(restart=True, delay=backoff_delay(consecutive))
