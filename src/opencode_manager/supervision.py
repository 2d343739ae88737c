"""Supervision: the limits an instance's keeper keeps to, and its restart decisions (pure: no
processes, no clocks of their own).

`Limits` is the one home of every supervision default: the instance spec's fields, the
`ocm start` options, a fleet file's keys and the keeper all read `DEFAULTS`.

Like PM2's exponential backoff restart: the first restart waits 100 ms, each further one 1.5
times longer, capped at 15 s; a run that stayed up 30 s resets the delay. Independently, a
flapping limit (more than `max_restarts` restarts within `window` seconds) puts the instance in
`errored`: it is no longer restarted until someone restarts it by hand.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

#: How long `ocm start` waits for an instance to answer, and `ocm stop` for one to end, unless
#: told otherwise (here, beside the other defaults, so the facade need not load the lifecycle
#: machinery to name them: `ocm run` does not use it).
DEFAULT_START_TIMEOUT = 120.0
DEFAULT_STOP_TIMEOUT = 10.0


class RestartPolicy(str, enum.Enum):
    """When the keeper starts the server again (`--restart`)."""

    NEVER = "never"
    ON_FAILURE = "on-failure"  # restart after a crash, a failed health check or a recycle
    ALWAYS = "always"  # also after a clean exit (code 0)

    # Shown as its value, as `enum.StrEnum` (3.11+) does: it lands in text and tables.
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ExitKind(str, enum.Enum):
    CLEAN = "clean"  # exited with code 0 on its own
    CRASHED = "crashed"  # non-zero exit or killed by a signal
    UNHEALTHY = "unhealthy"  # stopped answering its health check; we ended it
    RECYCLED = "recycled"  # ended on purpose (memory or age limit)


@dataclass(frozen=True)
class Limits:
    """What a keeper keeps its server to; the defaults are every instance's unless its spec
    (`ocm start` options, a fleet file) says otherwise."""

    policy: RestartPolicy = RestartPolicy.ON_FAILURE
    max_restarts: int = 10  # within `window` seconds, before giving up (errored)
    window: float = 60.0
    # backoff between restarts: base_delay x factor^(n-1), capped; reset by a stable run
    base_delay: float = 0.1
    factor: float = 1.5
    max_delay: float = 15.0
    stable_after: float = 30.0  # a run this long resets the backoff
    health_interval: float = 5.0  # liveness probe period
    health_timeout: float = 3.0  # the probe's deadline (at most the interval, at least 1 s)
    health_misses: int = 3  # misses in a row that recycle the server
    max_memory: int | None = None  # bytes (server and children): recycle above
    max_age: float | None = None  # seconds: recycle when older
    recycle_grace: float = 60.0  # how long a busy session may finish before a recycle
    # the instance log (the server's captured output; the keeper's LogSink reads the spec's)
    log_max_size: int = 10 * 1024 * 1024  # rotate above this
    log_keep: int = 5  # rotated files kept


#: Every instance's supervision unless its spec says otherwise.
DEFAULTS = Limits()


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay: float = 0.0
    errored: str | None = None  # why we give up, when we do


def backoff_delay(consecutive: int, limits: Limits = DEFAULTS) -> float:
    """Delay before the n-th consecutive restart (n >= 1): 0.1, 0.15, 0.225, ... <= 15 s."""
    if consecutive < 1:
        return 0.0
    return min(limits.base_delay * limits.factor ** (consecutive - 1), limits.max_delay)


def next_consecutive(previous: int, uptime: float, limits: Limits = DEFAULTS) -> int:
    """Consecutive-restart count after a run that lasted `uptime` seconds."""
    return 1 if uptime >= limits.stable_after else previous + 1


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
    return Decision(restart=True, delay=backoff_delay(consecutive, limits))
