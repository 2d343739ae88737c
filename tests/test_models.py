"""Unit tests: reconciling recorded state with what runs (pure)."""

from __future__ import annotations

import pytest

from opencode_manager.models import InstanceSpec, State, Status, derive_status


@pytest.mark.parametrize(
    ("state", "keeper", "server", "healthy", "expected"),
    [
        (State.RUNNING, True, True, True, Status.RUNNING),
        (State.RUNNING, False, True, True, Status.RUNNING),  # keeper gone, server still fine
        (State.RUNNING, True, True, False, Status.UNHEALTHY),
        # kill -9 of the server: its keeper restarts or ends it, and records which (on a
        # full disk, once there is room)
        (State.RUNNING, True, False, None, Status.STOPPING),
        (State.RUNNING, False, False, None, Status.CRASHED),
        (State.STARTING, True, False, None, Status.STARTING),
        (State.STARTING, False, False, None, Status.CRASHED),  # keeper died before the server
        (State.STOPPING, True, True, None, Status.STOPPING),
        (State.STOPPING, False, False, None, Status.STOPPED),
        (State.STOPPED, False, False, None, Status.STOPPED),
        (State.CRASHED, False, False, None, Status.CRASHED),
    ],
)
def test_derive_status(
    state: State, keeper: bool, server: bool, healthy: bool | None, expected: Status
) -> None:
    assert (
        derive_status(state, keeper_alive=keeper, server_alive=server, healthy=healthy) is expected
    )


def test_spec_round_trips_through_json() -> None:
    spec = InstanceSpec(
        name="a",
        dir="/p",
        port=None,
        port_range=(4100, 4110),
        cors=("https://x.test",),
        env=(("A", "1"),),
        auth=False,
    )
    assert InstanceSpec.from_json(spec.to_json()) == spec


def test_spec_ignores_unknown_fields_from_newer_versions() -> None:
    text = '{"name": "a", "dir": "/p", "from_the_future": 1}'
    assert InstanceSpec.from_json(text) == InstanceSpec(name="a", dir="/p")
