"""Provider control around a task's turns: a shared slot per turn, recovery, fallback.

`Control.drive` runs a task's turns through a `TaskRunner`: before each turn it takes a slot
of the model's provider (limits/leases.py: shared by every process through the registry, so
two batches on one provider share its `--concurrency`), showing the task `queued` with its
place while it waits (for room, rpm or an open breaker); after the turn it tells the
provider's breaker how the turn went and, when the turn failed on provider trouble, asks
`recovery.decide` what next: continue the same session after a backoff that honours
retry-after (`--recover N`), go on with the next model of the chain (`--fallback`), or stop.
A continuation is a new message in the same session (`TaskRunner.continue_with`): the prompt
the provider already took is never sent again. Every turn is listed in the record with its
model, error and what was done about it. The slot is given back before a backoff, so a
waiting task never holds one.

A detached send (`Control.send`: `ocm run --async`, MCP's `task_run`) queues the same way,
then hands its slot over to the server process holding the turn before its process exits
(`Slots.hand_over`); the slot comes back when the task is seen ended (its final record
frees it: `ocm wait`, `ocm result`, `ocm results`) or its server is gone. So that a turn
that ended unseen does not hold the queue up, a waiter blocked by a full limit has the
tasks holding the provider's slots looked at on their servers (`settle`, every few seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..database import Database
from ..errors import UsageError
from ..limits.breaker import BreakerPolicy
from ..limits.leases import DETACHED_HOLD, Lease, Slots, Waiting
from ..limits.policy import Reason
from ..limits.recovery import Action, ProviderError, Recovery, classify, decide
from ..models import TaskRecord, TaskStatus
from ..settings import Settings
from .runner import TaskRunner

#: What a continuation says to the model (numbered: each is a message of its own).
CONTINUE_TEXT = "Continue the task above from where it stopped (attempt {n})."
MAX_RECOVER = 100

Sleep = Callable[[float], Awaitable[None]]
#: Look at the tasks holding slots (their ids) and record those that ended on their server.
Settle = Callable[[list[str]], Awaitable[None]]
SETTLE_EVERY = 2.0  # seconds between two looks at the holders, while a waiter is blocked


def provider_of(model: str | None) -> str | None:
    """`anthropic` of `anthropic/claude-sonnet-4`; None when the model is not known here
    (no slot is taken for it)."""
    if not model or "/" not in model:
        return None
    return model.partition("/")[0] or None


def validate(
    *,
    priority: int = 0,
    recover: int | None = None,
    fallbacks: list[str] | None = None,
    max_cost: float | None = None,
    max_tokens: int | None = None,
) -> None:
    """The control options' bad values, as one clear line each."""
    if recover is not None and not 0 <= recover <= MAX_RECOVER:
        raise UsageError(f"invalid --recover {recover}: must be 0 to {MAX_RECOVER}")
    for model in fallbacks or []:
        if "/" not in model:
            raise UsageError(f"invalid --fallback {model!r}: expected PROVIDER/MODEL")
    if max_cost is not None and not max_cost > 0:
        raise UsageError(f"invalid --max-cost {max_cost:g}: must be above 0")
    if max_tokens is not None and max_tokens < 1:
        raise UsageError(f"invalid --max-tokens {max_tokens}: must be 1 or more")
    if not -1000 <= priority <= 1000:
        raise UsageError(f"invalid --priority {priority}: must be -1000 to 1000")


def slots_for(registry: Database, settings: Settings) -> Slots:
    """The fleet's slots, with the settings' lease time and breaker."""
    policy = BreakerPolicy(
        threshold=settings.breaker_threshold,
        window=settings.breaker_window,
        cooldown=settings.breaker_cooldown,
    )
    return Slots(registry, ttl=settings.lease_ttl, breaker_policy=policy)


@dataclass
class Control:
    """Takes a slot per turn and decides what follows a failed one (seams: `sleep`, `jitter`)."""

    slots: Slots | None = None  # None: no shared limits (only recovery and fallback)
    sleep: Sleep = asyncio.sleep
    jitter: Callable[[], float] = random.random
    clock: Callable[[], float] = time.time
    #: The model a task that names none runs on (its instance's config), so that it takes
    #: its provider's slots too; None, or None returned: unknown, no slot.
    default_model: Callable[[TaskRecord], str | None] | None = None
    #: Waiting on a full limit: look whether the holders' turns ended unseen (detached ones).
    settle: Settle | None = None
    _said: dict[str, Any] = field(default_factory=dict)
    _settled_at: float = 0.0

    async def send(self, runner: TaskRunner) -> None:
        """A detached send: wait for a slot, make the session, send the prompt, and hand the
        slot over to the server process holding the turn (the sender exits; `ocm wait` or
        anyone who sees the task ended frees it)."""
        record = runner.record
        provider = provider_of(record.model or await self._default(record))
        record.provider = provider
        async with self._slot(runner, provider) as lease:
            await runner.begin()
            await runner.send()
            if lease is not None and self.slots is not None:
                hold = max(record.timeout or 0.0, DETACHED_HOLD) + self.slots.ttl
                await asyncio.to_thread(self.slots.hand_over, lease, runner.custody.holder, hold)

    async def _default(self, record: TaskRecord) -> str | None:
        if record.model is not None or self.default_model is None:
            return None
        return await asyncio.to_thread(self.default_model, record)

    async def drive(self, runner: TaskRunner) -> TaskRecord:
        record = runner.record
        policy = Recovery(record.recover or 0, tuple(record.fallbacks))
        continued = 0  # continuations on the current model
        # A turn sent before (`ocm wait`, a resumed batch, MCP) is in flight already: it is
        # followed without queueing; its continuations take slots.
        followed = record.prompted or record.sending
        default = await self._default(record)
        while True:
            provider = provider_of(record.model or default)
            record.provider = provider
            started = self.clock()
            async with self._slot(runner, None if followed else provider) as lease:
                followed = False
                await runner.turn()
                error = self._trouble(record)
                if (
                    self.slots is not None
                    and provider is not None
                    and (record.status is TaskStatus.COMPLETED or error is not None)
                ):
                    await asyncio.to_thread(self.slots.report, provider, error)
            turn = self._log(record, started, error, lease)
            if error is None or (runner.cancel is not None and runner.cancel.is_set()):
                await runner.persist(record)
                return record
            decision = decide(
                error, policy, model=record.model, continued=continued, jitter=self.jitter()
            )
            turn.update(action=decision.action.value, delay=round(decision.delay, 3),
                        reason=decision.reason)  # fmt: skip
            if decision.action not in (Action.CONTINUE, Action.FALLBACK):
                await runner.persist(record)
                return record
            continued = continued + 1 if decision.action is Action.CONTINUE else 0
            if runner.observer.on_turn:
                runner.observer.on_turn(dict(turn))
            record.status = TaskStatus.RUNNING  # not over: it goes on after the backoff
            await runner.persist(record)
            if decision.delay > 0 and not await self._wait(runner, decision.delay):
                return await self._cancelled(runner)
            runner.continue_with(decision.model, CONTINUE_TEXT.format(n=len(record.turns) + 1))

    @staticmethod
    def _trouble(record: TaskRecord) -> ProviderError | None:
        """The provider trouble a turn ended with (None: it did not fail on the provider)."""
        if record.status is not TaskStatus.FAILED or not record.error:
            return None
        return classify(record.error, now=time.time())

    def _log(
        self, record: TaskRecord, started: float, error: ProviderError | None, lease: Lease | None
    ) -> dict[str, Any]:
        turn: dict[str, Any] = {
            "model": record.model,
            "message_id": record.message_id,
            "status": record.status.value,
            "steps": record.steps,
            "cost": record.cost,
            "error": record.error if record.status is not TaskStatus.COMPLETED else None,
            "trouble": error.trouble.value if error is not None else None,
            "queued_s": round(lease.waited, 3) if lease is not None else 0.0,
            "started_at": started,
            "ended_at": self.clock(),
        }
        record.turns.append(turn)
        return turn

    async def _wait(self, runner: TaskRunner, delay: float) -> bool:
        """Sleep the backoff; False when the task was cancelled meanwhile."""
        cancel = runner.cancel
        if cancel is None:
            await self.sleep(delay)
            return True
        waiter = asyncio.ensure_future(cancel.wait())
        sleeper = asyncio.ensure_future(self.sleep(delay))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (waiter, sleeper):
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
        return not cancel.is_set()

    async def _cancelled(self, runner: TaskRunner) -> TaskRecord:
        record = runner.record
        record.status = TaskStatus.ABORTED
        record.error = {"name": "aborted", "message": "aborted on request"}
        record.finished_at = time.time()
        await runner.persist(record)
        return record

    async def _settle_holders(self, provider: str, me: str) -> None:
        """Blocked by a full limit: a holder may be a detached turn that ended with nobody
        looking; its task, seen ended, gives its slot back (at most every SETTLE_EVERY)."""
        now = time.monotonic()
        if self.settle is None or self.slots is None or now - self._settled_at < SETTLE_EVERY:
            return
        self._settled_at = now
        holders = await asyncio.to_thread(self.slots.holders, provider)
        others = [owner for owner in holders if owner != me]
        if others:
            await self.settle(others)

    @contextlib.asynccontextmanager
    async def _slot(self, runner: TaskRunner, provider: str | None) -> AsyncIterator[Lease | None]:
        record = runner.record
        if self.slots is None or provider is None:
            yield None
            return

        async def queued(waiting: Waiting) -> None:
            blocked = waiting.blocked
            if blocked.reason is Reason.CONCURRENCY:
                await self._settle_holders(provider, record.id)
            said = {"provider": provider, "model": record.model, "place": waiting.place,
                    "reason": blocked.reason.value, "scope": blocked.scope}  # fmt: skip
            if (
                record.status is TaskStatus.QUEUED
                and record.queue is not None
                and all(record.queue.get(k) == v for k, v in said.items())
            ):
                return  # nothing new to show: no write
            record.status = TaskStatus.QUEUED
            record.queue = {**said, "since": (record.queue or {}).get("since", self.clock())}
            await runner.persist(record)
            if runner.observer.on_queue:
                runner.observer.on_queue(dict(said))

        async with self.slots.take(
            provider, record.model, record.id, record.priority, on_wait=queued
        ) as lease:
            if record.queue is not None:
                record.queue = None
                record.status = TaskStatus.RUNNING
            yield lease
