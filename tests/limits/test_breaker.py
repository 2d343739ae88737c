"""The circuit breaker per provider (limits/breaker.py, pure): histories as data."""

from __future__ import annotations

from opencode_manager.limits.breaker import Breaker, BreakerPolicy, BreakerState, failed, succeeded
from opencode_manager.limits.policy import Gate

POLICY = BreakerPolicy(threshold=3, window=60, cooldown=30, max_cooldown=100)


def fail_times(breaker: Breaker, *times: float, retry_after: float | None = None) -> Breaker:
    for at in times:
        breaker = failed(
            breaker, at, retry_after=retry_after, reason="APIError: 503", policy=POLICY
        )
    return breaker


def test_it_opens_after_the_threshold_of_failures_within_the_window() -> None:
    breaker = fail_times(Breaker(), 0, 10)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failures == (0, 10)
    assert breaker.gate(11).gate is Gate.CLOSED
    opened = fail_times(breaker, 20)
    assert opened.state is BreakerState.OPEN
    assert opened.until == 50
    assert opened.reason == "APIError: 503"
    assert opened.gate(49).gate is Gate.OPEN
    assert opened.gate(49).until == 50


def test_failures_outside_the_window_do_not_count() -> None:
    breaker = fail_times(Breaker(), 0, 10, 75)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failures == (75,)
    assert fail_times(Breaker(), 0, 61, 122).state is BreakerState.CLOSED


def test_the_cool_down_honours_a_longer_retry_after() -> None:
    opened = fail_times(Breaker(), 0, 1, 2, retry_after=90)
    assert opened.until == 92
    # A turn that was already in flight fails too: a longer retry-after pushes the end out.
    assert failed(opened, 5, retry_after=120, policy=POLICY).until == 125
    assert failed(opened, 5, retry_after=1, policy=POLICY).until == 92


def test_half_open_after_the_cool_down_one_trial_closes_or_reopens_it() -> None:
    opened = fail_times(Breaker(), 0, 1, 2)
    assert opened.at(32).state is BreakerState.HALF_OPEN
    assert opened.gate(32).gate is Gate.PROBE
    assert opened.gate(32, probing=True).probing
    assert succeeded(opened, 33) == Breaker()
    again = failed(opened, 33, policy=POLICY)
    assert again.state is BreakerState.OPEN
    assert again.trips == 1
    assert again.until == 33 + 60  # the cool-down doubles per failed trial
    third = failed(failed(again, 94, policy=POLICY), 300, policy=POLICY)
    assert third.trips == 3
    assert third.until == 300 + 100


def test_a_success_in_a_closed_breaker_keeps_the_failures_counted() -> None:
    breaker = succeeded(fail_times(Breaker(), 0, 1), 2)
    assert breaker.failures == (0, 1)
    assert fail_times(breaker, 3).state is BreakerState.OPEN
