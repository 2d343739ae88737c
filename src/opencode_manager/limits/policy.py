"""Who gets the next slot of a provider (pure): limits, the queue, and the decision.

A limit caps a provider, or one model of it, with `concurrency` (turns in flight at once)
and/or `rpm` (turns started in any 60 s: a sliding window of the grants made). Every limit
that applies to a request must have room: `anthropic` caps all its models together,
`anthropic/claude-sonnet-4` that model alone.

Waiters are served in order: higher `priority` first, then submission order (FIFO). The
decision replays the queue from its head, granting every waiter that every one of its limits
(and its provider's circuit breaker) would let through, each grant taking its room: so room is
kept for those ahead, and a waiter blocked only by its own model's limit does not hold up the
ones behind it for other models. A process polling for its slot runs this and takes the slot
when it is among the granted; nothing here reads a clock, a database or a process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from ..errors import UsageError

RPM_WINDOW = 60.0  # seconds: what "per minute" means for rpm
_PROVIDER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,99}")
_MODEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/+-]{0,199}")


@dataclass(frozen=True, order=True)
class Scope:
    """What a limit covers: a provider (`model` None), or one model of it."""

    provider: str
    model: str | None = None

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}" if self.model else self.provider

    def covers(self, provider: str, model: str | None) -> bool:
        """Whether a request for provider/model falls under this scope."""
        return self.provider == provider and (self.model is None or self.model == model)


def parse_scope(text: str) -> Scope:
    """`anthropic` or `anthropic/claude-sonnet-4` (a model id may hold more slashes:
    `openrouter/anthropic/claude-3` is provider `openrouter`, model `anthropic/claude-3`)."""
    provider, slash, model = text.strip().partition("/")
    if not _PROVIDER_RE.fullmatch(provider):
        raise UsageError(
            f"invalid provider {provider or text!r}: expected PROVIDER or PROVIDER/MODEL "
            "(letters, digits, '.', '_', '-', ':', '@')"
        )
    if slash and not _MODEL_RE.fullmatch(model):
        raise UsageError(f"invalid model {model!r} in {text!r}: expected PROVIDER/MODEL")
    return Scope(provider, model or None)


def split_model(model: str | None) -> tuple[str | None, str | None]:
    """`PROVIDER/MODEL` as (provider, model); (None, None) when not given."""
    if not model:
        return None, None
    provider, _, name = model.partition("/")
    return provider or None, name or None


@dataclass(frozen=True)
class Limit:
    """A cap on a scope: turns in flight at once, and turns started per minute."""

    scope: Scope
    concurrency: int | None = None
    rpm: int | None = None

    def validated(self) -> Limit:
        for name, value in (("concurrency", self.concurrency), ("rpm", self.rpm)):
            if value is not None and (isinstance(value, bool) or value < 1):
                raise UsageError(f"{self.scope}: --{name} must be 1 or more, got {value}")
        if self.concurrency is None and self.rpm is None:
            raise UsageError(
                f"{self.scope}: give --concurrency N and/or --rpm N (`ocm limits rm "
                f"{self.scope}` removes a limit)"
            )
        return self


class Gate(str, Enum):
    """What a provider's circuit breaker lets through now."""

    OPEN = "open"  # nothing: the provider keeps failing
    PROBE = "probe"  # one trial turn (half-open), and only while none is in flight
    CLOSED = "closed"  # everything the limits allow


@dataclass(frozen=True)
class BreakerGate:
    gate: Gate
    until: float | None = None  # OPEN: when it lets a probe through
    probing: bool = False  # PROBE: a trial turn is in flight already


@dataclass(frozen=True)
class Want:
    """A request for a slot: a waiter in the queue, or one about to join it."""

    id: str
    provider: str
    model: str | None
    priority: int = 0
    seq: int = 0  # submission order (the queue's autoincrement)


@dataclass(frozen=True)
class Held:
    """A lease in force (one turn in flight)."""

    provider: str
    model: str | None


@dataclass(frozen=True)
class Granted:
    """A past grant, for the rpm window."""

    provider: str
    model: str | None
    at: float


class Reason(str, Enum):
    CONCURRENCY = "concurrency"
    RPM = "rpm"
    BREAKER = "breaker"


@dataclass(frozen=True)
class Blocked:
    reason: Reason
    scope: str  # the limit's scope, or the provider whose breaker is open
    retry_at: float | None = None  # when it can change by itself (rpm, breaker); None: a release


@dataclass
class Admission:
    """The outcome of one replay of the queue."""

    granted: list[str] = field(default_factory=list)  # ids, in queue order
    probes: set[str] = field(default_factory=set)  # granted as a half-open breaker's trial
    blocked: dict[str, Blocked] = field(default_factory=dict)
    place: dict[str, int] = field(default_factory=dict)  # 1-based, among its provider's waiters

    def admits(self, want_id: str) -> bool:
        return want_id in self.granted


def queue_order(wants: Sequence[Want]) -> list[Want]:
    """Higher priority first, then submission order."""
    return sorted(wants, key=lambda w: (-w.priority, w.seq))


def applicable(limits: Sequence[Limit], provider: str, model: str | None) -> list[Limit]:
    return [limit for limit in limits if limit.scope.covers(provider, model)]


def rpm_retry_at(times: Sequence[float], rpm: int, now: float) -> float | None:
    """When a window holding `times` has room for one more grant (None: it has room now)."""
    recent = sorted(t for t in times if t > now - RPM_WINDOW)
    if len(recent) < rpm:
        return None
    return recent[len(recent) - rpm] + RPM_WINDOW


def admit(
    queue: Sequence[Want],
    limits: Sequence[Limit],
    held: Sequence[Held],
    grants: Sequence[Granted],
    now: float,
    gates: Mapping[str, BreakerGate] | None = None,
) -> Admission:
    """Replay the queue from its head: who would get a slot now, and why the others wait."""
    gates = gates or {}
    in_use: dict[Scope, int] = {}
    window: dict[Scope, list[float]] = {}
    for limit in limits:
        in_use[limit.scope] = sum(limit.scope.covers(h.provider, h.model) for h in held)
        window[limit.scope] = [
            g.at
            for g in grants
            if g.at > now - RPM_WINDOW and limit.scope.covers(g.provider, g.model)
        ]
    probing = {p for p, g in gates.items() if g.gate is Gate.PROBE and g.probing}
    result = Admission()
    places: dict[str, int] = {}
    for want in queue_order(queue):
        places[want.provider] = places.get(want.provider, 0) + 1
        result.place[want.id] = places[want.provider]
        gate = gates.get(want.provider, BreakerGate(Gate.CLOSED))
        if gate.gate is Gate.OPEN or (gate.gate is Gate.PROBE and want.provider in probing):
            until = gate.until if gate.gate is Gate.OPEN else None
            result.blocked[want.id] = Blocked(Reason.BREAKER, want.provider, until)
            continue
        blocked = _blocked_by(applicable(limits, want.provider, want.model), in_use, window, now)
        if blocked is not None:
            result.blocked[want.id] = blocked
            continue
        result.granted.append(want.id)
        for limit in applicable(limits, want.provider, want.model):
            in_use[limit.scope] += 1
            window[limit.scope].append(now)
        if gate.gate is Gate.PROBE:
            probing.add(want.provider)
            result.probes.add(want.id)
    return result


def _blocked_by(
    limits: Sequence[Limit],
    in_use: Mapping[Scope, int],
    window: Mapping[Scope, list[float]],
    now: float,
) -> Blocked | None:
    found: Blocked | None = None
    for limit in limits:
        if limit.concurrency is not None and in_use[limit.scope] >= limit.concurrency:
            return Blocked(Reason.CONCURRENCY, str(limit.scope))
        if limit.rpm is not None:
            at = rpm_retry_at(window[limit.scope], limit.rpm, now)
            if at is not None and (found is None or (found.retry_at or 0) < at):
                found = Blocked(Reason.RPM, str(limit.scope), at)
    return found


def expired(expires_at: float, now: float) -> bool:
    """A lease whose holder stopped renewing it: its slot is free again."""
    return expires_at <= now


def stale(seen_at: float, now: float, ttl: float) -> bool:
    """A waiter that stopped polling (its process died or hangs): it leaves the queue."""
    return seen_at + ttl <= now


def poll_delay(previous: float, blocked: Blocked | None, now: float, *, cap: float = 0.5) -> float:
    """How long a waiter sleeps before asking again: backoff x1.5 from 20 ms, at most `cap`
    while a release can free its slot at any moment; up to the known time (rpm, breaker),
    at most 5 s, when only the clock frees it."""
    step = min(cap, max(0.02, previous * 1.5))
    if blocked is not None and blocked.retry_at is not None:
        return max(step, min(5.0, blocked.retry_at - now))
    return step
