"""Budgets with a hard stop (pure): spend folded from a session's events, checked as it grows.

Spend comes from the session's own usage reports, which both lines send once per model step:

* 1.x: `message.updated` with an assistant `info` carrying `tokens` {input, output, reasoning,
  cache: {read, write}} and `cost`, totals of that message so far (a message is one model
  call and its steps; it is sent again as it grows), so the fold keeps the newest figure per
  message id;
* 2.x: `session.step.ended` {assistantMessageID, tokens, cost} once per step, and every step
  is an assistant entry of its own (docs/opencode2-notes.md §8-9; `session.usage.updated` is
  the session's total, which includes the turns before a continued task's: not used).

Cost is what OpenCode computes from the provider's price (`models.<id>.cost` per million
tokens in its config); tokens count everything the provider billed: input, output, reasoning
and the cache's reads and writes. Hitting a budget is an interrupt, like a timeout: the task
ends `budget_exceeded` with what it spent. A batch budget stops new tasks, never running ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class Spend:
    """Tokens and cost (in the provider's currency, USD for the ones we know)."""

    input: int = 0
    output: int = 0
    reasoning: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input + self.output + self.reasoning + self.cache_read + self.cache_write

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.input + other.input,
            self.output + other.output,
            self.reasoning + other.reasoning,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
            self.cost + other.cost,
        )

    @classmethod
    def of(cls, tokens: Mapping[str, Any] | None, cost: Any = 0.0) -> Spend:
        """From a record's or a message's `tokens` dict (both lines' shape) and `cost`."""
        tokens = tokens or {}
        raw = tokens.get("cache")
        cache: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        price = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else 0
        return cls(
            _int(tokens.get("input")),
            _int(tokens.get("output")),
            _int(tokens.get("reasoning")),
            _int(cache.get("read")),
            _int(cache.get("write")),
            price,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": {"input": self.input, "output": self.output, "reasoning": self.reasoning,
                       "cache": {"read": self.cache_read, "write": self.cache_write}},
            "total_tokens": self.tokens,
            "cost": self.cost,
        }  # fmt: skip


@dataclass
class SpendFold:
    """A task's spend so far, from its session's events: the newest figure per message."""

    by_message: dict[str, Spend] = field(default_factory=dict)

    @property
    def total(self) -> Spend:
        total = Spend()
        for spend in self.by_message.values():
            total = total + spend
        return total

    def observe(self, message_id: str, spend: Spend) -> Spend:
        """A message's spend so far (a newer report of the same message replaces the old)."""
        self.by_message[message_id] = spend
        return self.total

    def feed(self, event: Mapping[str, Any]) -> Spend | None:
        """Fold one event of either line; the new total when it reported usage, else None.
        The caller feeds only its own session's events, from the task's start on."""
        kind = event.get("type")
        if kind == "message.updated":  # 1.x
            props = event.get("properties")
            info = props.get("info") if isinstance(props, Mapping) else None
            if not isinstance(info, Mapping) or info.get("role") != "assistant":
                return None
            tokens = info.get("tokens")
            if not isinstance(tokens, Mapping) or not info.get("id"):
                return None
            return self.observe(str(info["id"]), Spend.of(tokens, info.get("cost")))
        if kind == "session.step.ended":  # 2.x: an assistant entry is one step
            data = event.get("data")
            if not isinstance(data, Mapping) or not isinstance(data.get("tokens"), Mapping):
                return None
            key = str(data.get("assistantMessageID") or f"step-{len(self.by_message)}")
            return self.observe(key, Spend.of(data["tokens"], data.get("cost")))
        return None


@dataclass(frozen=True)
class Budget:
    """A task's limits: `--max-cost USD` and/or `--max-tokens N` (None: no limit)."""

    max_cost: float | None = None
    max_tokens: int | None = None

    def validated(self) -> Budget:
        if self.max_cost is not None and not self.max_cost > 0:
            raise UsageError(f"--max-cost must be more than 0, got {self.max_cost}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise UsageError(f"--max-tokens must be 1 or more, got {self.max_tokens}")
        return self

    @property
    def unlimited(self) -> bool:
        return self.max_cost is None and self.max_tokens is None


@dataclass(frozen=True)
class Overrun:
    """A budget passed: what was spent against which limit (the record says so)."""

    kind: str  # "cost" or "tokens"
    limit: float
    spent: Spend

    @property
    def message(self) -> str:
        if self.kind == "cost":
            return f"budget exceeded: spent ${self.spent.cost:.4f} of ${self.limit:g}"
        return f"budget exceeded: {self.spent.tokens} tokens of {int(self.limit)}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": "BudgetExceeded", "kind": self.kind, "limit": self.limit,
                "message": self.message, **self.spent.to_dict()}  # fmt: skip


def check(budget: Budget, spent: Spend) -> Overrun | None:
    """The overrun when `spent` passes `budget` (the runner interrupts the turn at once)."""
    if budget.max_cost is not None and spent.cost > budget.max_cost:
        return Overrun("cost", budget.max_cost, spent)
    if budget.max_tokens is not None and spent.tokens > budget.max_tokens:
        return Overrun("tokens", float(budget.max_tokens), spent)
    return None


@dataclass(frozen=True)
class BatchGate:
    """Whether a batch may start another task under its budget (`--batch-max-cost`)."""

    may_start: bool
    spent: float
    limit: float | None
    message: str | None = None


def batch_gate(max_cost: float | None, spent: float, *, waiting: int) -> BatchGate:
    """A batch whose spend reached its budget starts no new task and says how many it left
    (`waiting`: tasks not started yet); running tasks go on under their own budgets."""
    if max_cost is None or spent < max_cost:
        return BatchGate(True, spent, max_cost)
    left = f"{waiting} task{'s' if waiting != 1 else ''} not started"
    return BatchGate(
        False, spent, max_cost, f"batch budget spent (${spent:.4f} of ${max_cost:g}): {left}"
    )
