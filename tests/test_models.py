"""Unit tests: reconciling recorded state with what runs, and the words of the enums (pure)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from opencode_manager.instances.doctor import Check, CheckLevel
from opencode_manager.instances.lifecycle import StopResult, StopVia
from opencode_manager.models import (
    BatchStatus,
    DesiredState,
    InstanceInfo,
    InstanceSpec,
    Owner,
    State,
    Status,
    TextEnum,
    derive_status,
)


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


@pytest.mark.parametrize("member", [*BatchStatus, *DesiredState, *Owner, *StopVia, *CheckLevel])
def test_a_word_enum_reads_writes_and_compares_as_its_word(member: TextEnum) -> None:
    """What were bare strings print, format, compare, hash and dump as the same strings."""
    word = member.value
    assert (str(member), f"{member}", f"{member:>12}") == (word, word, f"{word:>12}")
    assert member == word
    assert {word: 1}[member] == 1
    assert json.dumps({"k": member}) == json.dumps({"k": word})
    assert type(member)(word) is member


def test_stop_results_take_an_agents_words_and_give_them_back() -> None:
    """A host agent's stop answer (plain words across Ray) becomes the enums; `to_dict`, what
    `--json` and MCP show, gives the same words."""
    said = {"name": "c", "was": "starting", "status": "stopped", "via": "agent"}
    result = StopResult(**said)  # type: ignore[arg-type]
    assert (result.was, result.status, result.via) == (State.STARTING, State.STOPPED, StopVia.AGENT)
    data = result.to_dict()
    assert {k: data[k] for k in said} == said
    assert all(type(data[k]) is str for k in ("was", "status", "via"))
    with pytest.raises(ValueError, match="'elsewhere'"):
        StopResult("c", State.RUNNING, State.STOPPED, via="elsewhere")  # type: ignore[arg-type]


def test_checks_and_instances_dump_their_words() -> None:
    check = Check("port", False, "taken", level=CheckLevel.WARNING)
    assert check.to_dict()["level"] == "warning"
    assert type(check.to_dict()["level"]) is str
    info = InstanceInfo(
        "r", Status.RUNNING, False, None, None, "http://h:1", None, "1.2", True, None, None,
        0, None, None, None, None, True, owner=Owner.REMOTE,
    )  # fmt: skip
    assert info.to_dict()["owner"] == "remote"
    assert type(info.to_dict()["owner"]) is str
    assert (
        json.loads(json.dumps(replace(info, owner=Owner.CLUSTER).to_dict()))["owner"] == "cluster"
    )


def test_a_task_records_dict_is_asdicts_copied_whole() -> None:
    """`to_dict` copies JSON data itself (asdict is five times slower); it must give what
    asdict gives, share nothing with the record, and leave anything else to asdict."""
    import dataclasses

    from opencode_manager.models import TaskRecord, TaskStatus

    record = TaskRecord(
        id="t-1", prompt="p", status=TaskStatus.COMPLETED, created_at=1.0, started_at=1.0,
        finished_at=3.25, tool_calls=[{"tool": "bash", "input": {"command": "ls"}}],
        tokens={"input": 3, "cache": {"read": 1}}, structured={"a": [1, None, 2.5, True]},
        worktree={"path": "/w", "files": ["x"]}, todos=[("a tuple", 1)],
    )  # fmt: skip

    def expected(r: TaskRecord) -> dict[str, object]:
        return {**dataclasses.asdict(r), "status": r.status.value, "duration_s": r.duration_s}

    assert record.to_dict() == expected(record)  # a tuple inside: asdict's way
    record.todos = [{"content": "x", "status": "pending"}]
    data = record.to_dict()
    assert data == expected(record)
    data["tool_calls"][0]["input"]["command"] = "rm"
    data["todos"].append("more")
    assert record.tool_calls[0]["input"]["command"] == "ls"
    assert len(record.todos) == 1
