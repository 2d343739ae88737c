"""What `ocm diff` shows and `ocm up` does: the fleet file's instances against the registry's
(pure: specs in, a plan out).

An instance belongs to a fleet file's project when its spec says so (`InstanceSpec.project`);
nothing else is ever touched. Its effective spec is compared by a hash of the keys that shape
the server (the binary path found at start, and the task defaults, which change no server, are
left out), and a recreate names the keys that changed.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..models import InstanceRecord, InstanceSpec, State

#: Spec fields that are not the server's shape: who it is, where the binary was found, and
#: defaults for tasks (updated in place, no restart).
NOT_HASHED = frozenset({"name", "opencode", "project", "model", "agent"})
TASK_DEFAULTS = ("model", "agent")


class Action(str, enum.Enum):
    CREATE = "create"  # in the file, not in the registry
    RECREATE = "recreate"  # its spec changed (or --force-recreate)
    START = "start"  # unchanged, but not running (after `ocm down`, a crash that gave up)
    UNCHANGED = "unchanged"
    ORPHAN = "orphan"  # this project's, gone from the file
    CONFLICT = "conflict"  # the name is taken by an instance this project did not create


class DesiredInstance(Protocol):
    """What a fleet file asks for (instances/fleetfile.py: Desired)."""

    @property
    def name(self) -> str: ...
    @property
    def spec(self) -> InstanceSpec: ...


@dataclass(frozen=True)
class Change:
    name: str
    action: Action
    keys: tuple[str, ...] = ()  # for a recreate: the keys that changed; else what to say
    reason: str | None = None
    spec: InstanceSpec | None = None  # the desired spec (None for an orphan)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "action": self.action.value, "keys": list(self.keys),
                "reason": self.reason,
                "hash": spec_hash(self.spec) if self.spec is not None else None}  # fmt: skip


def spec_hash(spec: InstanceSpec) -> str:
    shaped = {k: v for k, v in asdict(spec).items() if k not in NOT_HASHED}
    return hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()[:16]


def changed_keys(desired: InstanceSpec, current: InstanceSpec) -> tuple[str, ...]:
    """The server-shaping keys that differ (env as `env.KEY`)."""
    want, have = asdict(desired), asdict(current)
    keys: list[str] = []
    for key in sorted(want):
        if key in NOT_HASHED or want[key] == have.get(key):
            continue
        if key == "env":
            old, new = dict(have.get("env") or ()), dict(want["env"] or ())
            keys += [f"env.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        else:
            keys.append(key)
    return tuple(keys)


def plan(
    desired: Sequence[DesiredInstance],
    records: Sequence[InstanceRecord],
    project: str,
    *,
    force_recreate: bool = False,
    live: set[str] | None = None,
) -> list[Change]:
    """One change per instance of the file, then the project's orphans. `live`: the names
    whose processes run (default: trust the registry's state)."""
    by_name = {r.name: r for r in records}
    wanted = {d.name for d in desired}
    changes: list[Change] = []
    for item in desired:
        spec = _owned(item.spec, project)
        record = by_name.get(item.name)
        if record is None:
            changes.append(Change(item.name, Action.CREATE, spec=spec))
        elif record.spec.project != project:
            owner = f"project {record.spec.project!r}" if record.spec.project else "by hand"
            changes.append(Change(item.name, Action.CONFLICT, spec=spec,
                                  reason=f"{item.name} exists, started {owner}"))  # fmt: skip
        else:
            running = record.state is State.RUNNING and (live is None or item.name in live)
            changes.append(_compare(item.name, spec, record, force_recreate, running))
    for record in records:
        if record.spec.project == project and record.name not in wanted:
            changes.append(Change(record.name, Action.ORPHAN, reason="gone from the file"))
    return changes


def _owned(spec: InstanceSpec, project: str) -> InstanceSpec:
    return InstanceSpec(**{**spec.__dict__, "project": project})


def _compare(
    name: str, spec: InstanceSpec, record: InstanceRecord, force: bool, running: bool
) -> Change:
    keys = changed_keys(spec, record.spec)
    if keys:
        return Change(name, Action.RECREATE, keys, "changed: " + ", ".join(keys), spec)
    if force:
        return Change(name, Action.RECREATE, (), "--force-recreate", spec)
    if not running:
        was = record.state.value if record.state is not State.RUNNING else "crashed"
        return Change(name, Action.START, (), f"it is {was}", spec)
    defaults = tuple(k for k in TASK_DEFAULTS if getattr(spec, k) != getattr(record.spec, k))
    reason = ("task defaults: " + ", ".join(defaults)) if defaults else None
    return Change(name, Action.UNCHANGED, defaults, reason, spec)
