"""Who gets the next slot (limits/policy.py, pure): the queue replayed from its head."""

from __future__ import annotations

import itertools

import pytest

from opencode_manager import UsageError
from opencode_manager.limits.policy import (
    BreakerGate,
    Gate,
    Granted,
    Held,
    Limit,
    Reason,
    Scope,
    Want,
    admit,
    expired,
    parse_scope,
    poll_delay,
    queue_order,
    rpm_retry_at,
    split_model,
    stale,
)

NOW = 1000.0


def want(
    id: str, model: str | None = "m", *, priority: int = 0, seq: int = 0, p: str = "p"
) -> Want:
    return Want(id, p, model, priority, seq)


def test_scopes_parse_a_provider_or_a_provider_model() -> None:
    assert parse_scope("anthropic") == Scope("anthropic")
    assert parse_scope("anthropic/claude-sonnet-4") == Scope("anthropic", "claude-sonnet-4")
    assert parse_scope("openrouter/anthropic/claude-3") == Scope("openrouter", "anthropic/claude-3")
    assert str(Scope("a", "b")) == "a/b"
    assert str(Scope("a")) == "a"
    for bad in ("", "/m", "a b", "p/", "p/ m"):
        with pytest.raises(UsageError):
            parse_scope(bad)
    assert split_model("a/b/c") == ("a", "b/c")
    assert split_model(None) == (None, None)


def test_a_limit_needs_a_cap_of_one_or_more() -> None:
    with pytest.raises(UsageError, match="--concurrency N and/or --rpm N"):
        Limit(Scope("p")).validated()
    with pytest.raises(UsageError, match="--concurrency must be 1 or more"):
        Limit(Scope("p"), concurrency=0).validated()
    with pytest.raises(UsageError, match="--rpm must be 1 or more"):
        Limit(Scope("p"), rpm=-1).validated()
    assert Limit(Scope("p"), rpm=5).validated().rpm == 5


def test_the_queue_is_priority_first_then_submission_order() -> None:
    queue = [
        want("a", seq=1),
        want("b", seq=2, priority=5),
        want("c", seq=3),
        want("d", seq=4, priority=5),
    ]
    assert [w.id for w in queue_order(queue)] == ["b", "d", "a", "c"]


def test_concurrency_grants_only_the_room_left_to_the_head_of_the_queue() -> None:
    limits = [Limit(Scope("p"), concurrency=2)]
    queue = [want("a", seq=1), want("b", seq=2), want("c", seq=3)]
    result = admit(queue, limits, [Held("p", "m")], [], NOW)
    assert result.granted == ["a"]
    assert result.blocked["b"].reason is Reason.CONCURRENCY
    assert result.blocked["b"].retry_at is None  # only a release frees it
    assert result.place == {"a": 1, "b": 2, "c": 3}
    # A later waiter never jumps the one ahead of it on the same limit.
    assert not admit(queue, limits, [Held("p", "m")] * 2, [], NOW).granted


def test_a_higher_priority_waiter_goes_first_even_if_it_came_later() -> None:
    limits = [Limit(Scope("p"), concurrency=1)]
    queue = [want("early", seq=1), want("urgent", seq=2, priority=10)]
    assert admit(queue, limits, [], [], NOW).granted == ["urgent"]


def test_a_model_limit_blocks_its_model_only_and_the_provider_limit_all() -> None:
    limits = [Limit(Scope("p"), concurrency=3), Limit(Scope("p", "big"), concurrency=1)]
    held = [Held("p", "big")]
    queue = [
        want("big-2", "big", seq=1),
        want("small", "small", seq=2),
        want("other", "x", seq=3, p="q"),
    ]
    result = admit(queue, limits, held, [], NOW)
    # The waiter blocked by its own model's limit does not hold up the one behind it.
    assert result.granted == ["small", "other"]
    assert result.blocked["big-2"].scope == "p/big"
    assert result.place["other"] == 1  # places count per provider


def test_no_limit_no_wait() -> None:
    queue = [want(str(i), seq=i) for i in range(50)]
    assert len(admit(queue, [], [Held("p", "m")] * 99, [], NOW).granted) == 50


def test_rpm_is_a_sliding_window_of_grants() -> None:
    limits = [Limit(Scope("p"), rpm=2)]
    grants = [Granted("p", "m", NOW - 50), Granted("p", "m", NOW - 10), Granted("p", "m", NOW - 61)]
    result = admit([want("a")], limits, [], grants, NOW)
    assert result.blocked["a"].reason is Reason.RPM
    assert result.blocked["a"].retry_at == pytest.approx(NOW + 10)  # the oldest in the window
    assert admit([want("a")], limits, [], grants, NOW + 10.5).granted == ["a"]
    # Each grant in one replay takes its place in the window.
    two = admit([want("a", seq=1), want("b", seq=2), want("c", seq=3)], limits, [], [], NOW)
    assert two.granted == ["a", "b"]
    assert rpm_retry_at([NOW - 1, NOW - 2], 3, NOW) is None


def test_an_open_breaker_holds_its_provider_and_half_open_lets_one_trial() -> None:
    queue = [want("a", seq=1), want("b", seq=2), want("c", seq=3, p="q")]
    closed_q = {"q": BreakerGate(Gate.CLOSED)}
    shut = admit(queue, [], [], [], NOW, {"p": BreakerGate(Gate.OPEN, until=NOW + 30), **closed_q})
    assert shut.granted == ["c"]
    assert shut.blocked["a"].reason is Reason.BREAKER
    assert shut.blocked["a"].retry_at == NOW + 30
    trial = admit(queue, [], [], [], NOW, {"p": BreakerGate(Gate.PROBE)})
    assert trial.granted == ["a", "c"]
    assert trial.probes == {"a"}
    assert trial.blocked["b"].reason is Reason.BREAKER
    busy = admit(queue, [], [], [], NOW, {"p": BreakerGate(Gate.PROBE, probing=True)})
    assert busy.granted == ["c"]


def test_expiry_staleness_and_the_poll_backoff() -> None:
    assert expired(NOW, NOW)
    assert not expired(NOW + 0.1, NOW)
    assert stale(NOW - 15, NOW, 15)
    assert not stale(NOW - 14, NOW, 15)
    delays = []
    delay = 0.0
    for _ in range(12):
        delay = poll_delay(delay, None, NOW)
        delays.append(delay)
    assert delays[0] == pytest.approx(0.02)
    assert delays[-1] == 0.5
    assert all(b >= a for a, b in itertools.pairwise(delays))
    from opencode_manager.limits.policy import Blocked

    assert poll_delay(0.02, Blocked(Reason.RPM, "p", NOW + 3), NOW) == pytest.approx(3)
    assert poll_delay(0.02, Blocked(Reason.BREAKER, "p", NOW + 300), NOW) == 5.0
