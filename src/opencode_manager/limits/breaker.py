"""A circuit breaker per provider (pure state machine; the registry keeps its state).

    closed ──(threshold transient failures within window)──► open
      ▲                                                        │ cool-down over
      │ success                                                ▼ (retry-after honoured)
      └──────────────────── half-open ◄────────────────────────┘
                               │ the trial turn fails: open again, a cool-down twice as long

While a provider is open its tasks wait in the queue (they do not fail); half-open lets one
trial turn through, and its outcome closes or reopens the breaker. Only transient provider
trouble counts (429, 5xx, overloaded, connection reset): a refused request or a task's own
failure says nothing about the provider's health. Time is an argument, so every history is a
unit test; every front shares one breaker per provider because its state lives in the
registry, not in a process.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from .policy import BreakerGate, Gate


class BreakerState(str, enum.Enum):
    CLOSED = "closed"  # turns go through; failures are counted in a sliding window
    OPEN = "open"  # turns wait until the cool-down ends
    HALF_OPEN = "half_open"  # one trial turn decides


@dataclass(frozen=True)
class BreakerPolicy:
    threshold: int = 5  # transient failures within `window` that open it
    window: float = 60.0  # seconds
    cooldown: float = 30.0  # seconds open before a trial (doubled per failed trial)
    max_cooldown: float = 600.0


@dataclass(frozen=True)
class Breaker:
    state: BreakerState = BreakerState.CLOSED
    failures: tuple[float, ...] = ()  # times of recent transient failures (closed)
    until: float | None = None  # open: when the cool-down ends
    trips: int = 0  # failed trials in a row (each doubles the cool-down)
    reason: str | None = None  # the failure that opened it, for `ocm limits`

    def at(self, now: float) -> Breaker:
        """The breaker as it stands at `now` (an open one whose cool-down is over is
        half-open: nothing else has to happen for that)."""
        if self.state is BreakerState.OPEN and self.until is not None and now >= self.until:
            return replace(self, state=BreakerState.HALF_OPEN)
        return self

    def gate(self, now: float, *, probing: bool = False) -> BreakerGate:
        """What it lets through at `now`; `probing`: a trial turn is in flight already."""
        current = self.at(now)
        if current.state is BreakerState.OPEN:
            return BreakerGate(Gate.OPEN, until=current.until)
        if current.state is BreakerState.HALF_OPEN:
            return BreakerGate(Gate.PROBE, probing=probing)
        return BreakerGate(Gate.CLOSED)


def failed(
    breaker: Breaker,
    now: float,
    *,
    retry_after: float | None = None,
    reason: str | None = None,
    policy: BreakerPolicy = BreakerPolicy(),
) -> Breaker:
    """A transient provider failure at `now` (with the provider's retry-after, if it said)."""
    current = breaker.at(now)
    wait = retry_after or 0.0
    if current.state is BreakerState.CLOSED:
        failures = (*(t for t in current.failures if t > now - policy.window), now)
        if len(failures) < policy.threshold:
            return replace(current, failures=failures)
        until = now + max(policy.cooldown, wait)
        return Breaker(BreakerState.OPEN, (), until, 0, reason)
    if current.state is BreakerState.HALF_OPEN:
        trips = current.trips + 1
        cooldown = min(policy.max_cooldown, policy.cooldown * 2**trips)
        return Breaker(BreakerState.OPEN, (), now + max(cooldown, wait), trips, reason)
    # Open already (turns that started before it opened fail too): honour a longer retry-after.
    until = max(current.until or now, now + wait)
    return replace(current, until=until)


def succeeded(breaker: Breaker, now: float) -> Breaker:
    """A turn on the provider went through: a trial closes the breaker; in a closed one the
    failures stay counted in their window (a success among failures does not hide them)."""
    current = breaker.at(now)
    if current.state is BreakerState.HALF_OPEN:
        return Breaker()
    return current
