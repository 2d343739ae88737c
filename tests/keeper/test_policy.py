"""Unit tests: restart decisions (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from opencode_manager.durations import parse_size
from opencode_manager.errors import UsageError
from opencode_manager.keeper.policy import (
    ExitKind,
    Limits,
    RestartPolicy,
    backoff_delay,
    decide,
    next_consecutive,
)


def test_backoff_grows_by_half_and_is_capped() -> None:
    delays = [backoff_delay(n) for n in range(1, 6)]
    assert delays == pytest.approx([0.1, 0.15, 0.225, 0.3375, 0.50625])
    assert backoff_delay(100) == 15.0
    assert backoff_delay(0) == 0.0


def test_a_stable_run_resets_the_backoff() -> None:
    assert next_consecutive(4, uptime=5.0) == 5
    assert next_consecutive(4, uptime=30.0) == 1


def test_policies() -> None:
    clean, crash = ExitKind.CLEAN, ExitKind.CRASHED
    never = Limits(policy=RestartPolicy.NEVER)
    on_failure = Limits(policy=RestartPolicy.ON_FAILURE)
    always = Limits(policy=RestartPolicy.ALWAYS)
    args: dict[str, Any] = {"consecutive": 1, "recent_restarts": [], "now": 100.0}
    assert not decide(never, crash, **args).restart
    assert not decide(on_failure, clean, **args).restart
    assert decide(on_failure, crash, **args).restart
    assert decide(on_failure, ExitKind.UNHEALTHY, **args).restart
    assert decide(always, clean, **args).delay == 0.1


def test_flapping_limit_gives_up_with_a_reason() -> None:
    limits = Limits(max_restarts=3, window=60.0)
    ok = decide(limits, ExitKind.CRASHED, consecutive=3, recent_restarts=[50.0, 60.0], now=100.0)
    assert ok.restart
    assert ok.delay == pytest.approx(0.225)
    gave_up = decide(
        limits, ExitKind.CRASHED, consecutive=4, recent_restarts=[50.0, 60.0, 70.0], now=100.0
    )
    assert not gave_up.restart
    assert gave_up.errored is not None
    assert "3 times within 60 s" in gave_up.errored
    old = decide(
        limits, ExitKind.CRASHED, consecutive=4, recent_restarts=[1.0, 2.0, 70.0], now=100.0
    )
    assert old.restart  # restarts outside the window do not count


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("100", 100),
        ("1k", 1024),
        ("512M", 512 << 20),
        ("1.5G", int(1.5 * (1 << 30))),
        ("2mib", 2 << 20),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "5x", "-1M", "0"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)
