"""Unit tests: what `ocm diff` shows, from fleet-file specs and registry records (pure)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from opencode_manager.instances.converge import Action, changed_keys, plan, spec_hash
from opencode_manager.models import InstanceRecord, InstanceSpec, State


@dataclass(frozen=True)
class Want:
    name: str
    spec: InstanceSpec


def spec(name: str, **fields: object) -> InstanceSpec:
    return InstanceSpec(name=name, dir="/p", **fields)  # type: ignore[arg-type]


def record(name: str, state: State = State.RUNNING, **fields: object) -> InstanceRecord:
    now = time.time()
    return InstanceRecord(name=name, spec=spec(name, **fields), state=state, created_at=now,
                          updated_at=now)  # fmt: skip


def actions(changes: list) -> dict[str, tuple[str, tuple[str, ...]]]:  # type: ignore[type-arg]
    return {c.name: (c.action.value, c.keys) for c in changes}


def test_create_unchanged_recreate_start_orphan_and_conflict() -> None:
    wanted = [
        Want("new", spec("new")),
        Want("same", spec("same", env=(("A", "1"),))),
        Want("changed", spec("changed", env=(("A", "2"), ("B", "1")), max_age=60.0)),
        Want("down", spec("down")),
        Want("mine", spec("mine")),
    ]
    records = [
        record("same", project="p", env=(("A", "1"),), opencode="/bin/opencode"),
        record("changed", project="p", env=(("A", "1"),)),
        record("down", State.STOPPED, project="p"),
        record("gone", project="p"),
        record("mine"),  # started by hand: never touched
        record("other", project="q"),  # another project's: not an orphan of this one
    ]
    got = actions(plan(wanted, records, "p"))
    assert got == {
        "new": ("create", ()),
        "same": ("unchanged", ()),  # the binary path found at start is not the spec's shape
        "changed": ("recreate", ("env.A", "env.B", "max_age")),
        "down": ("start", ()),
        "mine": ("conflict", ()),
        "gone": ("orphan", ()),
    }
    forced = actions(plan(wanted[1:2], records, "p", force_recreate=True))
    assert forced == {"same": ("recreate", ()), "gone": ("orphan", ()), "changed": ("orphan", ()),
                      "down": ("orphan", ())}  # fmt: skip


def test_task_defaults_change_no_server() -> None:
    changes = plan([Want("a", spec("a", model="x/y"))], [record("a", project="p")], "p")
    assert [(c.action, c.keys) for c in changes] == [(Action.UNCHANGED, ("model",))]
    assert spec_hash(spec("a", model="x/y", project="p")) == spec_hash(spec("b"))


def test_changed_keys_and_hash() -> None:
    before, after = spec("a", port=1, cors=("x",)), spec("a", port=2, cors=("x",))
    assert changed_keys(after, before) == ("port",)
    assert spec_hash(before) != spec_hash(after)
    assert changed_keys(before, before) == ()


def test_a_running_record_whose_processes_are_gone_is_started() -> None:
    records = [record("a", project="p")]
    changes = plan([Want("a", spec("a"))], records, "p", live=set())
    assert [(c.action, c.reason) for c in changes] == [(Action.START, "it is crashed")]
    assert plan([Want("a", spec("a"))], records, "p", live={"a"})[0].action is Action.UNCHANGED


def test_choosing_another_opencode_recreates_but_the_path_found_does_not() -> None:
    records = [record("a", project="p", binary="1.18.33", opencode="/x/1.18.33/opencode")]
    changes = plan([Want("a", spec("a", binary="2.1.2"))], records, "p")
    assert [(c.action, c.keys) for c in changes] == [(Action.RECREATE, ("binary",))]
    same = plan([Want("a", spec("a", binary="1.18.33"))], records, "p")
    assert same[0].action is Action.UNCHANGED
