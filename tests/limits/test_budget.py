"""Spend folded from both lines' events, budgets and the batch gate (limits/budget.py, pure)."""

from __future__ import annotations

from typing import Any

import pytest

from opencode_manager import UsageError
from opencode_manager.limits.budget import Budget, Spend, SpendFold, batch_gate, check


def v1_message(
    message_id: str, input: int, output: int, cost: float, role: str = "assistant"
) -> dict[str, Any]:
    """OpenCode 1.x's `message.updated` (tokens and cost are the message's so far)."""
    info = {"id": message_id, "role": role, "cost": cost,
            "tokens": {"total": input + output, "input": input, "output": output, "reasoning": 0,
                       "cache": {"read": 0, "write": 0}}}  # fmt: skip
    return {"type": "message.updated", "properties": {"info": info}}


def v2_step(message_id: str, input: int, output: int, cost: float) -> dict[str, Any]:
    """OpenCode 2.x's `session.step.ended` (one step: every step is an assistant entry)."""
    tokens = {"input": input, "output": output, "reasoning": 0, "cache": {"read": 2, "write": 1}}
    return {"type": "session.step.ended",
            "data": {"sessionID": "ses_1", "assistantMessageID": message_id, "finish": "stop",
                     "cost": cost, "tokens": tokens}}  # fmt: skip


def test_a_1x_message_reported_again_replaces_its_figure() -> None:
    fold = SpendFold()
    assert fold.feed(v1_message("msg_1", 100, 0, 0.001)) == Spend(100, 0, 0, 0, 0, 0.001)
    total = fold.feed(v1_message("msg_1", 100, 20, 0.004))
    assert total == Spend(100, 20, 0, 0, 0, 0.004)
    total = fold.feed(v1_message("msg_2", 150, 5, 0.002))
    assert total is not None
    assert total.tokens == 275
    assert total.cost == pytest.approx(0.006)
    assert fold.feed(v1_message("msg_u", 9, 9, 9.0, role="user")) is None
    assert fold.feed({"type": "session.idle", "properties": {}}) is None


def test_2x_steps_add_up() -> None:
    fold = SpendFold()
    fold.feed(v2_step("msg_a", 1158, 6, 0.003564))
    total = fold.feed(v2_step("msg_b", 1200, 10, 0.0038))
    assert total is not None
    assert (total.input, total.output, total.cache_read, total.cache_write) == (2358, 16, 4, 2)
    assert total.tokens == 2380
    assert total.cost == pytest.approx(0.007364)
    # The same step seen twice counts once.
    assert fold.feed(v2_step("msg_b", 1200, 10, 0.0038)) == total


def test_spend_from_a_record() -> None:
    spend = Spend.of(
        {"input": 5, "output": 2, "reasoning": 1, "cache": {"read": 3, "write": 4}}, 0.5
    )
    assert spend.tokens == 15
    assert spend.cost == 0.5
    assert Spend.of(None, None) == Spend()
    assert spend.to_dict()["total_tokens"] == 15


def test_a_budget_is_passed_by_cost_or_by_tokens() -> None:
    spend = Spend(input=900, output=200, cost=0.012)
    over = check(Budget(max_cost=0.01), spend)
    assert over is not None
    assert over.kind == "cost"
    assert over.message == "budget exceeded: spent $0.0120 of $0.01"
    assert over.to_dict()["name"] == "BudgetExceeded"
    assert over.to_dict()["cost"] == 0.012
    tokens = check(Budget(max_tokens=1000), spend)
    assert tokens is not None
    assert tokens.message == "budget exceeded: 1100 tokens of 1000"
    assert check(Budget(max_cost=0.02, max_tokens=2000), spend) is None
    assert check(Budget(), spend) is None
    assert Budget().unlimited
    for bad in (Budget(max_cost=0), Budget(max_tokens=0), Budget(max_cost=-1)):
        with pytest.raises(UsageError):
            bad.validated()


def test_a_batch_whose_budget_is_spent_starts_nothing_and_says_how_many_it_left() -> None:
    assert batch_gate(None, 99.0, waiting=3).may_start
    assert batch_gate(1.0, 0.5, waiting=3).may_start
    gate = batch_gate(1.0, 1.2, waiting=3)
    assert not gate.may_start
    assert gate.message == "batch budget spent ($1.2000 of $1): 3 tasks not started"
    assert batch_gate(1.0, 1.0, waiting=1).message == (
        "batch budget spent ($1.0000 of $1): 1 task not started"
    )
