"""Slots as leases in the registry: taken before a turn is sent, given back when it ends.

No daemon: each process that wants a slot joins the queue (a `waiters` row) and asks again
with backoff; each ask is one `BEGIN IMMEDIATE` transaction (SQLite's write lock is the
cross-process mutex) that drops what is dead, replays the queue (`policy.admit`) and, when
this waiter is among the granted, turns its row into a lease. So every front (a batch, `ocm
run`, MCP, the dashboard) shares the same limits, in the same order.

A lease names its holder by PID and start time and carries an expiry, which the holder
renews while it holds (every third of the lease time). A holder that dies stops renewing, and
its slots come back when the lease expires; when a limit is full, the holders are looked at,
and a lease whose owner is provably dead (`process.verified`: the PID is gone, or is another
process now) is taken back at once. A waiter that stops polling leaves the queue the same way.

    async with slots.take("anthropic", "claude-sonnet-4", owner=task_id, priority=0) as lease:
        ... send the turn, follow it ...
        slots.report(lease.provider, classified_error_or_None)   # the breaker learns

A detached turn (`ocm run --async`, MCP's `task_run`) outlives the process that sent it, so
its lease is handed over (`Slots.hand_over`) before that process exits: to the server
process that took the turn (a crash or restart ends the turn, and the slot is taken back like
any dead holder's), or, where nobody can tell (a remote server), to the task itself
(`TASK_HELD`: never taken for dead). Nobody renews it: it ends when the task is seen ended
(the task store releases a final task's leases, `release`), when its holder is proven gone,
or at its expiry, a long backstop (`DETACHED_HOLD`, or the task's timeout). Waiters blocked
by it have the tasks holding their provider's slots looked at (tasks/control.py), so the
slot comes back when the turn ends even if nobody runs `ocm wait`.

Each blocking call is a short transaction; `take` runs them in worker threads, so an event
loop never waits on the registry's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from .. import process
from ..database import Database
from ..errors import OcmError
from ..models import ProcessIdentity
from .breaker import Breaker, BreakerPolicy, BreakerState, failed, succeeded
from .policy import (
    RPM_WINDOW,
    Admission,
    Blocked,
    Granted,
    Held,
    Limit,
    Reason,
    Scope,
    Want,
    admit,
    poll_delay,
)
from .recovery import ProviderError, Trouble

DEFAULT_TTL = 30.0  # seconds a lease lives unless renewed
WAITER_TTL = 15.0  # seconds a waiter stays queued without polling
DEFAULT_BREAKER = BreakerPolicy()
#: How long a handed-over lease lives when the task has no timeout: the backstop for a turn
#: whose end nobody sees (its server unreachable, its holder not ours to check).
DETACHED_HOLD = 3600.0
#: The holder of a lease handed over to its task (no process vouches for it): alive until
#: released or expired.
TASK_HELD = ProcessIdentity(0, 0.0)

Alive = Callable[[ProcessIdentity], bool]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
#: Told where a ticket stands after each ask that did not get the slot.
OnWait = Callable[["Waiting"], "Awaitable[None] | None"]


@dataclass(frozen=True)
class Ticket:
    """One request for a slot (its id becomes the lease's)."""

    id: str
    provider: str
    model: str | None
    owner: str
    priority: int = 0


@dataclass
class Lease:
    """A slot held: one turn in flight on `provider` (and `model`)."""

    id: str
    provider: str
    model: str | None
    owner: str
    granted_at: float
    expires_at: float
    probe: bool = False  # the trial turn of a half-open breaker
    waited: float = 0.0  # seconds spent in the queue
    lost: bool = False  # it had expired (the holder was frozen): renewing took it again


@dataclass(frozen=True)
class Waiting:
    """Not yet: where the ticket stands and what holds it up."""

    place: int  # 1-based, among the waiters for the same provider
    blocked: Blocked


def alive(identity: ProcessIdentity) -> bool:
    """Whether a lease's holder is still the process that took it."""
    return process.verified(identity) is not None


def _task_held(identity: ProcessIdentity) -> bool:
    return identity.pid <= 0


def release(db: sqlite3.Connection, owner: str) -> None:
    """The task `owner` has ended: the slots it holds are free (a detached turn's lease,
    handed over to its server or itself; a live holder's is given back by it anyway)."""
    db.execute("DELETE FROM leases WHERE owner = ?", (owner,))


def limits_of(db: sqlite3.Connection, provider: str) -> list[Limit]:
    rows = db.execute(
        "SELECT provider, model, concurrency, rpm FROM limits WHERE provider = ?", (provider,)
    )
    return [Limit(Scope(r[0], r[1]), r[2], r[3]) for r in rows]


def load_breaker(db: sqlite3.Connection, provider: str) -> Breaker:
    row = db.execute(
        "SELECT state, failures, until, trips, reason FROM breakers WHERE provider = ?",
        (provider,),
    ).fetchone()
    if row is None:
        return Breaker()
    try:
        failures = tuple(float(t) for t in json.loads(row[1] or "[]"))
    except (ValueError, TypeError):
        failures = ()
    return Breaker(BreakerState(row[0]), failures, row[2], int(row[3] or 0), row[4])


def save_breaker(db: sqlite3.Connection, provider: str, breaker: Breaker, now: float) -> None:
    db.execute(
        "INSERT INTO breakers (provider, state, failures, until, trips, reason, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider) DO UPDATE SET state ="
        " excluded.state, failures = excluded.failures, until = excluded.until, trips ="
        " excluded.trips, reason = excluded.reason, updated_at = excluded.updated_at",
        (provider, breaker.state.value, json.dumps(list(breaker.failures)), breaker.until,
         breaker.trips, breaker.reason, now),
    )  # fmt: skip


def purge(db: sqlite3.Connection, now: float, *, waiter_ttl: float = WAITER_TTL) -> None:
    """Drop what is over by itself: expired leases, waiters that stopped polling, grants
    older than the rpm window."""
    db.execute("DELETE FROM leases WHERE expires_at <= ?", (now,))
    db.execute("DELETE FROM waiters WHERE seen_at <= ?", (now - waiter_ttl,))
    db.execute("DELETE FROM grants WHERE at <= ?", (now - RPM_WINDOW,))


def drop_dead_holders(db: sqlite3.Connection, is_alive: Alive = alive) -> int:
    """Take back the leases and queue places of processes that are provably dead (a kill -9:
    nothing will give them back before they expire); how many went. For what `ocm limits`
    shows: an ask for a slot does the same when a limit is full (`Slots._drop_dead`)."""
    verdicts: dict[tuple[int, float], bool] = {}
    gone = 0
    for table in ("leases", "waiters"):
        rows = db.execute(f"SELECT id, pid, ctime FROM {table}").fetchall()  # noqa: S608
        for row_id, pid, ctime in rows:
            key = (int(pid), float(ctime))
            if key not in verdicts:
                identity = ProcessIdentity(*key)
                verdicts[key] = _task_held(identity) or is_alive(identity)
            if not verdicts[key]:
                db.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,))  # noqa: S608
                gone += 1
    return gone


@dataclass
class _Room:
    """What one ask read of its provider, inside the transaction."""

    provider: str
    limits: list[Limit]
    leases: list[tuple[str, str | None, int, float, bool]]  # id, model, pid, ctime, probe
    waiters: list[tuple[str, str | None, int, int, float, int]]  # id, model, pid, ... seq
    grants: list[Granted]
    breaker: Breaker


class Slots:
    """Take and give back provider slots; report provider health to its breaker.

    Seams: `clock` (wall time: leases are compared across processes), `sleep`, `alive` (is
    a holder still its process), `me` (this process's identity; found when first needed).
    """

    def __init__(
        self,
        registry: Database,
        *,
        ttl: float = DEFAULT_TTL,
        waiter_ttl: float = WAITER_TTL,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        alive: Alive = alive,
        me: ProcessIdentity | None = None,
        breaker_policy: BreakerPolicy = DEFAULT_BREAKER,
    ) -> None:
        self.registry = registry
        self.ttl = ttl
        self.waiter_ttl = waiter_ttl
        self.clock = clock
        self.sleep = sleep
        self.breaker_policy = breaker_policy
        self._alive = alive
        self._me = me
        self._found_in: int | None = None  # the PID `me` was found in (None: given)
        self._dead: set[tuple[int, float]] = set()

    @property
    def me(self) -> ProcessIdentity:
        """The holder's identity: this process's (found again in a forked child)."""
        if self._me is None or self._found_in not in (None, os.getpid()):
            found = process.identity_of(os.getpid())
            assert found is not None, "this process has no identity"
            self._me, self._found_in = found, os.getpid()
        return self._me

    def ticket(self, provider: str, model: str | None, owner: str, priority: int = 0) -> Ticket:
        return Ticket(uuid.uuid4().hex, provider, model or None, owner, priority)

    # -- one ask -------------------------------------------------------------------------
    def try_take(self, ticket: Ticket) -> Lease | Waiting:
        """Join the queue (or stay in it) and take the slot if it is this ticket's turn;
        one transaction."""
        me = self.me
        with self.registry.transaction() as db:
            now = self.clock()
            purge(db, now, waiter_ttl=self.waiter_ttl)
            seq, enqueued_at = self._enqueue(db, ticket, me, now)
            room = self._read(db, ticket.provider, now)
            result = self._admit(room, now)
            blocked = result.blocked.get(ticket.id)
            # A full limit (or a trial in flight): take back what dead holders keep.
            if (
                not result.admits(ticket.id)
                and self._holdup_may_be_dead(blocked)
                and self._drop_dead(db, room, me)
            ):
                room = self._read(db, ticket.provider, now)
                result = self._admit(room, now)
            if not result.admits(ticket.id):
                place = result.place.get(ticket.id, 1)
                assert ticket.id in result.blocked, (ticket, result)
                return Waiting(place, result.blocked[ticket.id])
            probe = ticket.id in result.probes
            db.execute("DELETE FROM waiters WHERE seq = ?", (seq,))
            expires = now + self.ttl
            db.execute(
                "INSERT INTO leases (id, provider, model, owner, pid, ctime, priority, probe,"
                " granted_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ticket.id, ticket.provider, ticket.model, ticket.owner, me.pid,
                 me.create_time, ticket.priority, int(probe), now, expires),
            )  # fmt: skip
            db.execute(
                "INSERT INTO grants (provider, model, at) VALUES (?, ?, ?)",
                (ticket.provider, ticket.model, now),
            )
        return Lease(
            ticket.id, ticket.provider, ticket.model, ticket.owner, now, expires, probe,
            waited=max(0.0, now - enqueued_at),
        )  # fmt: skip

    def _enqueue(
        self, db: sqlite3.Connection, ticket: Ticket, me: ProcessIdentity, now: float
    ) -> tuple[int, float]:
        row = db.execute("SELECT seq, enqueued_at FROM waiters WHERE id = ?", (ticket.id,))
        found = row.fetchone()
        if found is not None:
            db.execute("UPDATE waiters SET seen_at = ? WHERE seq = ?", (now, found[0]))
            return int(found[0]), float(found[1])
        cursor = db.execute(
            "INSERT INTO waiters (id, provider, model, owner, pid, ctime, priority, enqueued_at,"
            " seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ticket.id, ticket.provider, ticket.model, ticket.owner, me.pid, me.create_time,
             ticket.priority, now, now),
        )  # fmt: skip
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid), now

    def _read(self, db: sqlite3.Connection, provider: str, now: float) -> _Room:
        leases = [
            (r[0], r[1], int(r[2]), float(r[3]), bool(r[4]))
            for r in db.execute(
                "SELECT id, model, pid, ctime, probe FROM leases WHERE provider = ?", (provider,)
            )
        ]
        waiters = [
            (r[0], r[1], int(r[2]), int(r[3]), float(r[4]), int(r[5]))
            for r in db.execute(
                "SELECT id, model, priority, pid, ctime, seq FROM waiters WHERE provider = ?",
                (provider,),
            )
        ]
        grants = [
            Granted(provider, r[0], float(r[1]))
            for r in db.execute(
                "SELECT model, at FROM grants WHERE provider = ? AND at > ?",
                (provider, now - RPM_WINDOW),
            )
        ]
        return _Room(
            provider, limits_of(db, provider), leases, waiters, grants, load_breaker(db, provider)
        )

    def _admit(self, room: _Room, now: float) -> Admission:
        provider = room.provider
        queue = [Want(w[0], provider, w[1], w[2], w[5]) for w in room.waiters]
        held = [Held(provider, model) for _, model, _, _, _ in room.leases]
        probing = any(probe for *_, probe in room.leases)
        gate = room.breaker.gate(now, probing=probing)
        return admit(queue, room.limits, held, room.grants, now, {provider: gate})

    @staticmethod
    def _holdup_may_be_dead(blocked: Blocked | None) -> bool:
        return blocked is not None and (
            blocked.reason is Reason.CONCURRENCY
            or (blocked.reason is Reason.BREAKER and blocked.retry_at is None)
        )

    def _drop_dead(self, db: sqlite3.Connection, room: _Room, me: ProcessIdentity) -> bool:
        """Take back leases and queue places whose owner is provably dead; whether any."""
        dead_leases = [
            lease_id
            for lease_id, _, pid, ctime, _ in room.leases
            if not self._is_alive(ProcessIdentity(pid, ctime), me)
        ]
        dead_waiters = [
            waiter_id
            for waiter_id, _, _, pid, ctime, _ in room.waiters
            if not self._is_alive(ProcessIdentity(pid, ctime), me)
        ]
        for lease_id in dead_leases:
            db.execute("DELETE FROM leases WHERE id = ?", (lease_id,))
        for waiter_id in dead_waiters:
            db.execute("DELETE FROM waiters WHERE id = ?", (waiter_id,))
        return bool(dead_leases or dead_waiters)

    def _is_alive(self, identity: ProcessIdentity, me: ProcessIdentity) -> bool:
        if _task_held(identity):
            return True
        if identity.pid == me.pid and abs(identity.create_time - me.create_time) < 0.05:
            return True
        key = (identity.pid, identity.create_time)
        if key in self._dead:
            return False  # a PID and start time never come back to life
        if self._alive(identity):
            return True
        self._dead.add(key)
        return False

    # -- holding -------------------------------------------------------------------------
    def renew(self, lease: Lease) -> Lease:
        """Push the lease's expiry on; a lease that expired meanwhile (its holder was frozen
        past the lease time) is taken again, over the limit if need be: the turn is in
        flight whatever the table says, and `lost` records that it happened."""
        me = self.me
        with self.registry.transaction() as db:
            now = self.clock()
            expires = now + self.ttl
            cursor = db.execute(
                "UPDATE leases SET expires_at = ? WHERE id = ?", (expires, lease.id)
            )
            if cursor.rowcount == 0:
                db.execute(
                    "INSERT INTO leases (id, provider, model, owner, pid, ctime, probe,"
                    " granted_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (lease.id, lease.provider, lease.model, lease.owner, me.pid,
                     me.create_time, int(lease.probe), lease.granted_at, expires),
                )  # fmt: skip
                lease.lost = True
        lease.expires_at = expires
        return lease

    def hand_over(self, lease: Lease, holder: ProcessIdentity | None, hold: float) -> str:
        """A detached turn's slot outlives this process: the lease goes to `holder` (the
        server process holding the turn; None: the task itself) for `hold` seconds, under a
        new id, so that this process giving back its own (`take`'s exit) leaves it. Its id."""
        holder = holder or TASK_HELD
        handed = uuid.uuid4().hex
        with self.registry.transaction() as db:
            now = self.clock()
            db.execute("DELETE FROM leases WHERE id = ?", (lease.id,))
            db.execute(
                "INSERT INTO leases (id, provider, model, owner, pid, ctime, probe,"
                " granted_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (handed, lease.provider, lease.model, lease.owner, holder.pid,
                 holder.create_time, int(lease.probe), lease.granted_at, now + hold),
            )  # fmt: skip
        return handed

    def holders(self, provider: str) -> list[str]:
        """Who holds the provider's slots now (task ids), oldest lease first."""
        rows = self.registry.query(
            "SELECT owner FROM leases WHERE provider = ? ORDER BY granted_at", (provider,)
        )
        return list(dict.fromkeys(str(r[0]) for r in rows))

    def give_back(self, lease: Lease) -> None:
        """The turn ended: the slot is free (and a queued turn may take it)."""
        with self.registry.transaction() as db:
            db.execute("DELETE FROM leases WHERE id = ?", (lease.id,))

    def withdraw(self, ticket: Ticket) -> None:
        """Leave the queue (cancelled while waiting); also gives back a slot that an ask
        still running when the wait was cancelled may have taken."""
        with self.registry.transaction() as db:
            db.execute("DELETE FROM waiters WHERE id = ?", (ticket.id,))
            db.execute("DELETE FROM leases WHERE id = ?", (ticket.id,))

    # -- the breaker -----------------------------------------------------------------------
    def breaker(self, provider: str) -> Breaker:
        with self.registry.transaction() as db:
            return load_breaker(db, provider).at(self.clock())

    def report(self, provider: str, error: ProviderError | None) -> Breaker:
        """A turn's outcome for its provider's breaker: None = it went through; a transient
        error counts as a failure; a refused request or the task's own failure says nothing
        about the provider's health and changes nothing."""
        if error is None:
            return self._change_breaker(provider, lambda b, now: succeeded(b, now))
        if error.trouble is not Trouble.TRANSIENT:
            return self.breaker(provider)
        reason = f"{error.name}: {error.message}"[:300]
        return self._change_breaker(
            provider,
            lambda b, now: failed(
                b, now, retry_after=error.retry_after, reason=reason, policy=self.breaker_policy
            ),
        )

    def _change_breaker(
        self, provider: str, change: Callable[[Breaker, float], Breaker]
    ) -> Breaker:
        with self.registry.transaction() as db:
            now = self.clock()
            before = load_breaker(db, provider)
            after = change(before, now)
            if after != before:
                save_breaker(db, provider, after, now)
        return after

    # -- the async shell -------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def take(
        self,
        provider: str,
        model: str | None,
        owner: str,
        priority: int = 0,
        *,
        on_wait: OnWait | None = None,
    ) -> AsyncIterator[Lease]:
        """Hold a slot of provider/model while the block runs: queue (calling `on_wait`
        with the place after each ask that did not get it; a coroutine function is
        awaited), take, renew, give back."""
        ticket = self.ticket(provider, model, owner, priority)
        lease = await self._wait_for(ticket, on_wait)
        renewing = asyncio.create_task(self._renew_forever(lease))
        try:
            yield lease
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            # A registry locked past its timeout: the lease then ends with its expiry.
            with contextlib.suppress(OcmError):
                await asyncio.shield(asyncio.to_thread(self.give_back, lease))

    async def _wait_for(self, ticket: Ticket, on_wait: OnWait | None) -> Lease:
        delay = 0.0
        try:
            while True:
                outcome = await asyncio.to_thread(self.try_take, ticket)
                if isinstance(outcome, Lease):
                    return outcome
                if on_wait is not None:
                    said = on_wait(outcome)
                    if inspect.isawaitable(said):
                        await said
                delay = poll_delay(delay, outcome.blocked, self.clock())
                await self.sleep(delay)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self.withdraw, ticket))
            raise

    async def _renew_forever(self, lease: Lease) -> None:
        while True:
            await self.sleep(self.ttl / 3)
            try:
                await asyncio.to_thread(self.renew, lease)
            except OcmError:  # a locked registry: the next renewal tries again
                continue


def leases_of(registry: Database, owner: str) -> Sequence[str]:
    """The ids of the leases `owner` holds (for tests and `ocm limits`)."""
    return [r[0] for r in registry.query("SELECT id FROM leases WHERE owner = ?", (owner,))]
