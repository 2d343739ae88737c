"""The limits themselves (`ocm limits set/rm`, a fleet file's `[limits]`), and what `ocm
limits` shows of each: slots in use, turns started in the last minute, the queue, the
provider's circuit breaker."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..database import Database
from ..errors import NotFoundError
from .breaker import BreakerState
from .leases import WAITER_TTL, Alive, alive, drop_dead_holders, load_breaker, purge
from .policy import RPM_WINDOW, Limit, Scope, Want, parse_scope, queue_order

CLI_SOURCE = "cli"


@dataclass(frozen=True)
class LimitStatus:
    """One row of `ocm limits`: a limit (or a provider with traffic and no limit) now."""

    scope: str
    provider: str
    model: str | None
    concurrency: int | None  # None: no cap (a provider listed for its traffic or breaker)
    rpm: int | None
    source: str | None  # "cli", or the fleet file's project that set it
    in_use: int  # leases in force
    started_last_minute: int  # grants within the rpm window
    queued: int  # waiters
    breaker: str  # closed, open, half_open (the provider's)
    breaker_until: float | None
    breaker_reason: str | None
    failures: int  # recent transient failures counted by a closed breaker

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope, "provider": self.provider, "model": self.model,
            "concurrency": self.concurrency, "rpm": self.rpm, "source": self.source,
            "in_use": self.in_use, "started_last_minute": self.started_last_minute,
            "queued": self.queued, "breaker": self.breaker, "breaker_until": self.breaker_until,
            "breaker_reason": self.breaker_reason, "failures": self.failures,
        }  # fmt: skip


def set_limits(
    registry: Database, limits: Sequence[Limit], *, source: str = CLI_SOURCE
) -> list[Limit]:
    """Create or replace limits (all in one transaction); a key left out is no cap."""
    checked = [limit.validated() for limit in limits]
    with registry.transaction() as db:
        now = time.time()
        for limit in checked:
            db.execute(
                "INSERT INTO limits (scope, provider, model, concurrency, rpm, source, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope) DO UPDATE SET concurrency ="
                " excluded.concurrency, rpm = excluded.rpm, source = excluded.source,"
                " updated_at = excluded.updated_at",
                (str(limit.scope), limit.scope.provider, limit.scope.model, limit.concurrency,
                 limit.rpm, source, now),
            )  # fmt: skip
    return checked


def set_limit(
    registry: Database,
    scope: str,
    *,
    concurrency: int | None = None,
    rpm: int | None = None,
    source: str = CLI_SOURCE,
) -> Limit:
    """`ocm limits set SCOPE --concurrency N --rpm N`: create or replace one limit."""
    [limit] = set_limits(registry, [Limit(parse_scope(scope), concurrency, rpm)], source=source)
    return limit


def remove_limits(registry: Database, scopes: Sequence[Scope | str]) -> list[str]:
    """Remove limits; all or nothing: an unknown scope is NotFoundError and none goes."""
    names = [str(parse_scope(s) if isinstance(s, str) else s) for s in scopes]
    with registry.transaction() as db:
        known = {row[0] for row in db.execute("SELECT scope FROM limits")}
        missing = [name for name in names if name not in known]
        if missing:
            raise NotFoundError(f"no limit for {', '.join(missing)}; see `ocm limits`")
        for name in names:
            db.execute("DELETE FROM limits WHERE scope = ?", (name,))
    return names


def list_limits(registry: Database) -> list[tuple[Limit, str | None]]:
    """Every limit with what set it, providers first, then their models."""
    rows = registry.query(
        "SELECT provider, model, concurrency, rpm, source FROM limits"
        " ORDER BY provider, model IS NOT NULL, model"
    )
    return [(Limit(Scope(r[0], r[1]), r[2], r[3]), r[4]) for r in rows]


def overview(
    registry: Database, *, now: float | None = None, is_alive: Alive = alive
) -> list[LimitStatus]:
    """What `ocm limits` shows: each limit with its traffic now, then the providers that have
    traffic or a breaker that is not closed but no limit of their own."""
    with registry.transaction() as db:
        at = time.time() if now is None else now
        purge(db, at, waiter_ttl=WAITER_TTL)  # what is over by itself is not "in use"
        drop_dead_holders(db, is_alive)  # nor what a killed process held
        leases = [(r[0], r[1]) for r in db.execute("SELECT provider, model FROM leases")]
        waiters = [(r[0], r[1]) for r in db.execute("SELECT provider, model FROM waiters")]
        recent = db.execute("SELECT provider, model FROM grants WHERE at > ?", (at - RPM_WINDOW,))
        grants = [(r[0], r[1]) for r in recent]
        breakers = {
            provider: load_breaker(db, provider).at(at)
            for (provider,) in db.execute("SELECT provider FROM breakers")
        }
    limits = list_limits(registry)
    rows: list[LimitStatus] = []

    def row(scope: Scope, limit: Limit | None, source: str | None) -> LimitStatus:
        breaker = breakers.get(scope.provider)

        def count(pairs: list[tuple[str, str | None]]) -> int:
            return sum(scope.covers(provider, model) for provider, model in pairs)

        return LimitStatus(
            scope=str(scope),
            provider=scope.provider,
            model=scope.model,
            concurrency=limit.concurrency if limit else None,
            rpm=limit.rpm if limit else None,
            source=source,
            in_use=count(leases),
            started_last_minute=count(grants),
            queued=count(waiters),
            breaker=(breaker.state if breaker else BreakerState.CLOSED).value,
            breaker_until=breaker.until if breaker and breaker.state is BreakerState.OPEN else None,
            breaker_reason=(
                breaker.reason if breaker and breaker.state is not BreakerState.CLOSED else None
            ),
            failures=len(breaker.failures) if breaker else 0,
        )

    for limit, source in limits:
        rows.append(row(limit.scope, limit, source))
    capped = {limit.scope.provider for limit, _ in limits if limit.scope.model is None}
    busy = {p for p, _ in leases} | {p for p, _ in waiters}
    troubled = {p for p, b in breakers.items() if b.state is not BreakerState.CLOSED or b.failures}
    for provider in sorted((busy | troubled) - capped):
        rows.append(row(Scope(provider), None, None))
    return rows


def slot_owners(registry: Database, *, is_alive: Alive = alive) -> set[str]:
    """Who holds or waits for a slot now (task ids), after what is over by itself and what
    dead processes held is dropped: a task `queued` but not among them was left by its
    process (a killed `ocm run`)."""
    with registry.transaction() as db:
        purge(db, time.time(), waiter_ttl=WAITER_TTL)
        drop_dead_holders(db, is_alive)
        rows = db.execute("SELECT owner FROM waiters UNION SELECT owner FROM leases")
        return {str(r[0]) for r in rows}


@dataclass(frozen=True)
class QueuedTicket:
    """One waiter for a slot (`ocm top`'s queue): who, for what, its place."""

    owner: str  # the task id
    provider: str
    model: str | None
    priority: int
    place: int  # 1-based, among the waiters for the same provider
    waited_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"owner": self.owner, "provider": self.provider, "model": self.model,
                "priority": self.priority, "place": self.place,
                "waited_s": round(self.waited_s, 1)}  # fmt: skip


def queue(registry: Database, *, now: float | None = None) -> list[QueuedTicket]:
    """Every waiter, per provider in queue order (higher priority first, then submission)."""
    at = time.time() if now is None else now
    rows = registry.query(
        "SELECT id, provider, model, priority, seq, owner, enqueued_at FROM waiters"
        " WHERE seen_at > ?",
        (at - WAITER_TTL,),
    )
    owners = {str(r[0]): (str(r[5]), float(r[6])) for r in rows}
    wants = [Want(str(r[0]), str(r[1]), r[2], int(r[3]), int(r[4])) for r in rows]
    found: list[QueuedTicket] = []
    places: dict[str, int] = {}
    for want in sorted(queue_order(wants), key=lambda w: w.provider):
        places[want.provider] = places.get(want.provider, 0) + 1
        owner, enqueued = owners[want.id]
        found.append(
            QueuedTicket(owner, want.provider, want.model, want.priority,
                         places[want.provider], max(0.0, at - enqueued))
        )  # fmt: skip
    return found
