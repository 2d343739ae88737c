"""Deadlines that scale with the machine's load, and errors that say how busy it was."""

from __future__ import annotations

from opencode_manager import load


def test_the_factor_is_the_run_queue_per_core_between_one_and_the_cap() -> None:
    assert load.factor(0.5, 2) == 1.0
    assert load.factor(6.0, 2) == 3.0
    assert load.factor(20.0, 2) == load.MAX_FACTOR


def test_describe_names_the_load_and_the_cores() -> None:
    assert load.describe(19.84, 2) == "load average 19.8 on 2 cores"
    assert load.describe(0.1, 1) == "load average 0.1 on 1 core"
