"""`ocm up` / `ocm down`: converge the fleet to its fleet file, like docker compose.

New instances start in parallel; changed ones are recreated one at a time (each healthy again
before the next goes down, so a group is never all down); orphans are stopped and removed only
with `remove_orphans`. Nothing that the file's project did not create is ever touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConflictError
from ..models import InstanceSpec
from . import lifecycle
from .converge import Action, Change, DesiredInstance, plan
from .fleet import Fleet, is_live


@dataclass
class UpReport:
    """What `ocm up` did (and `ocm diff` would do)."""

    project: str
    changes: list[Change]
    done: list[str] = field(default_factory=list)  # names acted on, in order

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "changes": [c.to_dict() for c in self.changes],
                "done": list(self.done)}  # fmt: skip


def diff(
    fleet: Fleet, desired: Sequence[DesiredInstance], project: str, *, force_recreate: bool = False
) -> UpReport:
    return UpReport(project, plan(desired, fleet.records(), project, force_recreate=force_recreate))


def up(
    fleet: Fleet,
    desired: Sequence[DesiredInstance],
    project: str,
    *,
    recreate: bool = True,
    force_recreate: bool = False,
    remove_orphans: bool = False,
    timeout: float = lifecycle.DEFAULT_START_TIMEOUT,
) -> UpReport:
    report = diff(fleet, desired, project, force_recreate=force_recreate)
    conflicts = [c for c in report.changes if c.action is Action.CONFLICT]
    if conflicts:
        raise ConflictError(
            "; ".join(c.reason or c.name for c in conflicts)
            + ": rename it in the fleet file, or stop and `ocm rm` the other one"
        )
    by_action: dict[Action, list[Change]] = {}
    for change in report.changes:
        by_action.setdefault(change.action, []).append(change)
    for change in by_action.get(Action.UNCHANGED, []):
        if change.keys and change.spec is not None:  # task defaults: no restart needed
            fleet.registry.update(change.name, spec=_kept(fleet, change.spec))
    creates = [c.spec for c in by_action.get(Action.CREATE, []) if c.spec is not None]
    if creates:
        report.done += lifecycle.start(fleet, creates, timeout=timeout)
    starts = {c.name: c.spec for c in by_action.get(Action.START, []) if c.spec is not None}
    if starts:
        report.done += lifecycle.restart(fleet, list(starts), timeout=timeout, respec=starts)
    if recreate:
        for change in by_action.get(Action.RECREATE, []):
            assert change.spec is not None
            report.done += lifecycle.restart(
                fleet, [change.name], timeout=timeout, respec={change.name: change.spec}
            )
    if remove_orphans:
        orphans = [c.name for c in by_action.get(Action.ORPHAN, [])]
        live = [r.name for r in fleet.records() if r.name in orphans and is_live(r)]
        if live:
            lifecycle.stop(fleet, live)
        if orphans:
            report.done += lifecycle.remove(fleet, orphans)
    return report


def down(fleet: Fleet, project: str) -> list[lifecycle.StopResult]:
    """Stop every instance this project created (they stay recorded: `ocm up` starts them)."""
    names = [r.name for r in fleet.records() if r.spec.project == project and is_live(r)]
    return lifecycle.stop(fleet, names) if names else []


def _kept(fleet: Fleet, spec: InstanceSpec) -> InstanceSpec:
    """The stored spec with the file's task defaults (the rest is what runs)."""
    current = fleet.registry.get(spec.name).spec
    return InstanceSpec(**{**current.__dict__, "model": spec.model, "agent": spec.agent})
