"""Unit tests: supervision limits and restart decisions (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from opencode_manager.cli.instances import start
from opencode_manager.durations import parse_size
from opencode_manager.errors import UsageError
from opencode_manager.instances.spec import RESTART_POLICIES, Supervision
from opencode_manager.keeper.loop import limits_of
from opencode_manager.models import InstanceSpec
from opencode_manager.supervision import (
    DEFAULTS,
    ExitKind,
    Limits,
    RestartPolicy,
    backoff_delay,
    decide,
    next_consecutive,
)


def test_every_supervision_default_comes_from_the_one_limits() -> None:
    """The spec, `ocm start`'s options, a fleet file's keys (Supervision) and the keeper
    read `DEFAULTS`: a default changed there changes everywhere."""
    spec = InstanceSpec(name="a", dir="/p")
    assert limits_of(spec) == DEFAULTS
    mapping = {
        "restart": DEFAULTS.policy, "max_restarts": DEFAULTS.max_restarts,
        "restart_window": DEFAULTS.window, "health_interval": DEFAULTS.health_interval,
        "max_memory": DEFAULTS.max_memory, "max_age": DEFAULTS.max_age,
        "log_max_size": DEFAULTS.log_max_size, "log_keep": DEFAULTS.log_keep,
    }  # fmt: skip
    assert {key: getattr(spec, key) for key in mapping} == mapping
    assert {key: getattr(Supervision(), key) for key in mapping} == mapping
    options = {p.name: p.default for p in start.params}
    assert options["restart_policy"] == DEFAULTS.policy.value
    assert options["max_restarts"] == DEFAULTS.max_restarts
    assert options["restart_window"] == DEFAULTS.window
    assert options["health_interval"] == DEFAULTS.health_interval
    assert parse_size(str(options["log_max_size"])) == DEFAULTS.log_max_size
    assert options["log_keep"] == DEFAULTS.log_keep
    assert RESTART_POLICIES == ("never", "on-failure", "always")


def test_a_policy_given_by_its_word_is_the_enum_and_reads_as_the_word() -> None:
    spec = InstanceSpec(name="a", dir="/p", restart="never")  # type: ignore[arg-type]
    assert spec.restart is RestartPolicy.NEVER
    assert InstanceSpec.from_json(spec.to_json()) == spec
    assert '"restart": "never"' in spec.to_json()  # stored as before
    assert f"{spec.restart}" == str(spec.restart) == "never"


def test_backoff_follows_the_limits() -> None:
    slow = Limits(base_delay=1.0, factor=2.0, max_delay=5.0, stable_after=10.0)
    assert [backoff_delay(n, slow) for n in range(1, 5)] == [1.0, 2.0, 4.0, 5.0]
    assert next_consecutive(2, uptime=9.0, limits=slow) == 3
    assert next_consecutive(2, uptime=10.0, limits=slow) == 1
    made = decide(slow, ExitKind.CRASHED, consecutive=2, recent_restarts=[], now=0.0)
    assert made.delay == 2.0


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
