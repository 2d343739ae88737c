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
from ..limits.leases import Lease, Slots, Waiting
from ..limits.recovery import Action, ProviderError, Recovery, classify, decide
from ..models import TaskRecord, TaskStatus
from ..settings import Settings
from .runner import TaskRunner

#: What a continuation says to the model (numbered: each is a message of its own).
CONTINUE_TEXT = "Continue the task above from where it stopped (attempt {n})."
MAX_RECOVER = 100

Sleep = Callable[[float], Awaitable[None]]


def provider_of(model: str | None) -> str | None:
    """`anthropic` of `anthropic/claude-sonnet-4`; None when the model is not known here
    (the instance's default: no slot is taken for it)."""
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
    _said: dict[str, Any] = field(default_factory=dict)

    async def drive(self, runner: TaskRunner) -> TaskRecord:
        record = runner.record
        policy = Recovery(record.recover or 0, tuple(record.fallbacks))
        continued = 0  # continuations on the current model
        # A turn sent before (`ocm wait`, a resumed batch, MCP) is in flight already: it is
        # followed without queueing; its continuations take slots.
        followed = record.prompted or record.sending
        while True:
            provider = provider_of(record.model)
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

    @contextlib.asynccontextmanager
    async def _slot(self, runner: TaskRunner, provider: str | None) -> AsyncIterator[Lease | None]:
        record = runner.record
        if self.slots is None or provider is None:
            yield None
            return

        async def queued(waiting: Waiting) -> None:
            blocked = waiting.blocked
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
