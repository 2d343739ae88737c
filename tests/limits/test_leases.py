"""Slots as leases in a real registry (limits/leases.py, table.py, keys.py): one process,
the clock and the holders' liveness injected. Several processes: test_slot_holders.py."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from opencode_manager import NotFoundError, UsageError
from opencode_manager.limits import (
    Lease,
    Limit,
    Scope,
    Slots,
    Waiting,
    claim_key,
    overview,
    parse_scope,
    remove_limits,
    set_limits,
    task_for_key,
)
from opencode_manager.limits.breaker import BreakerPolicy, BreakerState
from opencode_manager.limits.keys import forget_keys
from opencode_manager.limits.policy import Reason
from opencode_manager.limits.recovery import ProviderError, Trouble
from opencode_manager.migrations import MIGRATIONS
from opencode_manager.models import ProcessIdentity
from opencode_manager.process import identity_of
from opencode_manager.registry import Registry


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry.db")
    yield reg
    reg.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def slots(registry: Registry, clock: Clock, **kw: object) -> Slots:
    return Slots(registry, clock=clock, ttl=30.0, **kw)  # type: ignore[arg-type]


def limit(text: str, concurrency: int | None = None, rpm: int | None = None) -> Limit:
    return Limit(parse_scope(text), concurrency, rpm)


def test_the_migration_adds_the_tables_to_an_existing_registry(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for name, fn in MIGRATIONS[: [n for n, _ in MIGRATIONS].index("m009_provider_control")]:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    db.commit()
    db.close()
    reg = Registry(path)
    try:
        assert "m009_provider_control" in reg.applied_migrations()
        tables = {r[0] for r in reg.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"limits", "leases", "waiters", "grants", "breakers", "submission_keys"} <= tables
    finally:
        reg.close()


def test_limits_are_set_replaced_listed_and_removed(registry: Registry) -> None:
    set_limits(registry, [limit("anthropic", 8, 50), limit("anthropic/opus", 2)])
    set_limits(registry, [limit("anthropic", 4)], source="api")
    rows = overview(registry)
    assert [(r.scope, r.concurrency, r.rpm, r.source) for r in rows] == [
        ("anthropic", 4, None, "api"),
        ("anthropic/opus", 2, None, "cli"),
    ]
    with pytest.raises(NotFoundError, match="no limit for nope"):
        remove_limits(registry, [Scope("anthropic"), Scope("nope")])
    assert len(overview(registry)) == 2  # all or nothing
    assert remove_limits(registry, [Scope("anthropic", "opus")]) == ["anthropic/opus"]
    with pytest.raises(UsageError):
        set_limits(registry, [limit("x")])


def test_at_most_concurrency_holders_and_a_release_lets_the_next_in(
    registry: Registry, clock: Clock
) -> None:
    set_limits(registry, [limit("p", concurrency=2)])
    s = slots(registry, clock)
    tickets = [s.ticket("p", "m", f"task-{i}") for i in range(4)]
    first, second = s.try_take(tickets[0]), s.try_take(tickets[1])
    assert isinstance(first, Lease)
    assert isinstance(second, Lease)
    third, fourth = s.try_take(tickets[2]), s.try_take(tickets[3])
    assert isinstance(third, Waiting)
    assert isinstance(fourth, Waiting)
    assert (third.place, fourth.place) == (1, 2)
    assert third.blocked.reason is Reason.CONCURRENCY
    [row] = overview(registry, now=clock.now)
    assert (row.in_use, row.queued, row.started_last_minute) == (2, 2, 2)
    s.give_back(first)
    assert isinstance(s.try_take(tickets[3]), Waiting)  # the one ahead keeps its turn
    clock.now += 1
    taken = s.try_take(tickets[2])
    assert isinstance(taken, Lease)
    assert taken.waited == 1
    assert isinstance(s.try_take(tickets[3]), Waiting)


def test_priority_goes_first_then_submission_order(registry: Registry, clock: Clock) -> None:
    set_limits(registry, [limit("p", concurrency=1)])
    s = slots(registry, clock)
    holder = s.try_take(s.ticket("p", None, "holder"))
    assert isinstance(holder, Lease)
    low, high = s.ticket("p", None, "low"), s.ticket("p", None, "high", priority=5)
    assert isinstance(s.try_take(low), Waiting)
    outcome = s.try_take(high)
    assert isinstance(outcome, Waiting)
    assert outcome.place == 1  # ahead of the one that came first
    s.give_back(holder)
    assert isinstance(s.try_take(low), Waiting)
    assert isinstance(s.try_take(high), Lease)


def test_a_model_limit_and_its_providers_limit_both_hold(registry: Registry, clock: Clock) -> None:
    set_limits(registry, [limit("p", concurrency=3), limit("p/big", concurrency=1)])
    s = slots(registry, clock)
    assert isinstance(s.try_take(s.ticket("p", "big", "a")), Lease)
    blocked = s.try_take(s.ticket("p", "big", "b"))
    assert isinstance(blocked, Waiting)
    assert blocked.blocked.scope == "p/big"
    # Behind it, another model goes by (until the provider's own limit is full).
    assert isinstance(s.try_take(s.ticket("p", "small", "c")), Lease)
    assert isinstance(s.try_take(s.ticket("p", "small", "d")), Lease)
    assert isinstance(s.try_take(s.ticket("p", "small", "e")), Waiting)
    # Another provider is not limited at all.
    assert isinstance(s.try_take(s.ticket("q", "x", "f")), Lease)


def test_an_unrenewed_lease_expires_and_a_renewed_one_does_not(
    registry: Registry, clock: Clock
) -> None:
    set_limits(registry, [limit("p", concurrency=1)])
    s = slots(registry, clock)
    kept = s.try_take(s.ticket("p", None, "kept"))
    assert isinstance(kept, Lease)
    clock.now += 20
    s.renew(kept)
    assert kept.expires_at == clock.now + 30
    clock.now += 20  # 40 s after the grant, 20 after the renewal
    waiting = s.ticket("p", None, "next")
    assert isinstance(s.try_take(waiting), Waiting)
    clock.now += 10  # the holder stopped renewing: its lease is over
    assert isinstance(s.try_take(waiting), Lease)
    # The frozen holder wakes and renews: it takes its slot again, and says so.
    s.renew(kept)
    assert kept.lost
    assert overview(registry, now=clock.now)[0].in_use == 2


def test_a_lease_whose_owner_is_provably_dead_is_taken_back_at_once(
    registry: Registry, clock: Clock
) -> None:
    set_limits(registry, [limit("p", concurrency=1)])
    me = identity_of(__import__("os").getpid())
    assert me is not None
    # A holder that was this PID once, started long ago: a process that no longer exists.
    ghost = slots(registry, clock, me=ProcessIdentity(me.pid, me.create_time - 1000))
    assert isinstance(ghost.try_take(ghost.ticket("p", None, "ghost")), Lease)
    living = slots(registry, clock)
    assert isinstance(living.try_take(living.ticket("p", None, "me")), Lease)


def test_a_live_holder_is_not_taken_back_before_its_lease_ends(
    registry: Registry, clock: Clock
) -> None:
    set_limits(registry, [limit("p", concurrency=1)])
    asked: list[ProcessIdentity] = []

    def alive(identity: ProcessIdentity) -> bool:
        asked.append(identity)
        return True

    other = ProcessIdentity(1, 1.0)
    holder = slots(registry, clock, me=other)
    assert isinstance(holder.try_take(holder.ticket("p", None, "holder")), Lease)
    s = slots(registry, clock, alive=alive)
    assert isinstance(s.try_take(s.ticket("p", None, "me")), Waiting)
    assert asked == [other]


def test_a_waiter_that_stops_asking_leaves_the_queue(registry: Registry, clock: Clock) -> None:
    set_limits(registry, [limit("p", concurrency=1)])
    s = slots(registry, clock)
    holder = s.try_take(s.ticket("p", None, "holder"))
    gone, patient = s.ticket("p", None, "gone"), s.ticket("p", None, "patient")
    assert isinstance(s.try_take(gone), Waiting)
    outcome = s.try_take(patient)
    assert isinstance(outcome, Waiting)
    assert outcome.place == 2
    assert isinstance(holder, Lease)
    s.give_back(holder)
    clock.now += 16  # `gone` asked last 16 s ago: past the waiters' 15 s
    assert isinstance(s.try_take(patient), Lease)


def test_rpm_counts_the_grants_of_the_last_minute(registry: Registry, clock: Clock) -> None:
    set_limits(registry, [limit("p", rpm=2)])
    s = slots(registry, clock)
    for owner in ("a", "b"):
        lease = s.try_take(s.ticket("p", None, owner))
        assert isinstance(lease, Lease)
        s.give_back(lease)
        clock.now += 10
    third = s.ticket("p", None, "c")
    outcome = s.try_take(third)
    assert isinstance(outcome, Waiting)
    assert outcome.blocked.reason is Reason.RPM
    assert outcome.blocked.retry_at == pytest.approx(clock.now + 40)
    clock.now += 40
    assert isinstance(s.try_take(third), Lease)


TRANSIENT = ProviderError(Trouble.TRANSIENT, "APIError", "503 from scripted", 503, retry_after=5)


def test_an_open_breaker_queues_its_provider_and_one_trial_closes_it(
    registry: Registry, clock: Clock
) -> None:
    s = slots(registry, clock, breaker_policy=BreakerPolicy(threshold=2, cooldown=10))
    assert s.report("p", TRANSIENT).state is BreakerState.CLOSED
    s.report("p", ProviderError(Trouble.REFUSED, "APIError", "400", 400))  # says nothing
    assert s.report("p", TRANSIENT).state is BreakerState.OPEN
    waiting = s.ticket("p", "m", "a")
    outcome = s.try_take(waiting)
    assert isinstance(outcome, Waiting)
    assert outcome.blocked.reason is Reason.BREAKER
    assert outcome.blocked.retry_at == clock.now + 10
    row = overview(registry, now=clock.now)[0]
    assert (row.scope, row.breaker, row.queued) == ("p", "open", 1)
    assert row.breaker_reason == "APIError: 503 from scripted"
    assert isinstance(s.try_take(s.ticket("q", "m", "b")), Lease)  # other providers go on
    clock.now += 10
    trial = s.try_take(waiting)
    assert isinstance(trial, Lease)
    assert trial.probe
    assert isinstance(s.try_take(s.ticket("p", "m", "c")), Waiting)  # one trial at a time
    assert s.report("p", None).state is BreakerState.CLOSED
    assert isinstance(s.try_take(s.ticket("p", "m", "c")), Lease)


def test_take_queues_renews_and_gives_back(registry: Registry) -> None:
    set_limits(registry, [limit("p", concurrency=1)])
    places: list[int] = []

    async def main() -> None:
        s = Slots(registry, ttl=0.3)
        async with s.take("p", "m", "first") as lease:
            expires = lease.expires_at

            async def second() -> float:
                async with s.take(
                    "p", "m", "second", on_wait=lambda w: places.append(w.place)
                ) as got:
                    return got.waited

            waiter = asyncio.create_task(second())
            while not places:
                await asyncio.sleep(0.01)
            while lease.expires_at == expires:  # renewed every ttl/3 while held
                await asyncio.sleep(0.01)
        waited = await asyncio.wait_for(waiter, 10)
        assert waited > 0

    asyncio.run(main())
    assert places[0] == 1
    assert [r.in_use for r in overview(registry)] == [0]


def test_a_cancelled_wait_leaves_the_queue(registry: Registry) -> None:
    set_limits(registry, [limit("p", concurrency=1)])

    async def main() -> None:
        s = Slots(registry)
        async with s.take("p", None, "holder"):
            queued = asyncio.Event()
            task = asyncio.create_task(
                s.take("p", None, "impatient", on_wait=lambda w: queued.set()).__aenter__()
            )
            await asyncio.wait_for(queued.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert overview(registry)[0].queued == 0

    asyncio.run(main())
    assert overview(registry)[0].in_use == 0


def test_a_submission_key_names_one_task(registry: Registry) -> None:
    assert claim_key(registry, "nightly-42", "t-1") == "t-1"
    assert claim_key(registry, "nightly-42", "t-2") == "t-1"
    assert task_for_key(registry, "nightly-42") == "t-1"
    assert task_for_key(registry, "other") is None
    assert forget_keys(registry, ["t-1"]) == 1
    assert claim_key(registry, "nightly-42", "t-3") == "t-3"
    for bad in ("", " ", "x" * 201, "a\nb"):
        with pytest.raises(UsageError):
            claim_key(registry, bad, "t-4")
