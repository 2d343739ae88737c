"""`ocm up` / `ocm down`: converge the fleet to its fleet file, like docker compose.

New instances start in parallel; changed ones are recreated one at a time (each healthy again
before the next goes down, so a group is never all down); orphans are stopped and removed only
with `remove_orphans`. Nothing that the file's project did not create is ever touched.
The file's `[limits]` are set as `ocm limits set` would (fleet-wide: a limit the file no
longer has stays until `ocm limits rm`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConflictError, Interrupted
from ..limits import table as limit_table
from ..limits.policy import Limit
from ..models import InstanceSpec
from . import lifecycle, ports
from .converge import Action, Change, plan
from .fleet import Fleet, is_live
from .fleetfile import FleetFile, FleetFileError, Problem, read_fleet_file
from .tomlpos import key_lines, line_of


@dataclass
class UpReport:
    """What `ocm up` did (and `ocm diff` would do)."""

    project: str
    changes: list[Change]
    done: list[str] = field(default_factory=list)  # names acted on, in order
    limits: list[LimitChange] = field(default_factory=list)  # [limits] new or changed

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "changes": [c.to_dict() for c in self.changes],
                "done": list(self.done), "limits": [c.to_dict() for c in self.limits]}  # fmt: skip


@dataclass(frozen=True)
class LimitChange:
    """A limit of the file that the registry does not have as written."""

    limit: Limit
    before: Limit | None  # None: new

    def to_dict(self) -> dict[str, Any]:
        def caps(limit: Limit | None) -> dict[str, Any] | None:
            return None if limit is None else {"concurrency": limit.concurrency, "rpm": limit.rpm}

        return {"scope": str(self.limit.scope), **(caps(self.limit) or {}),
                "before": caps(self.before)}  # fmt: skip


def limit_changes(wanted: Sequence[Limit], current: Sequence[Limit]) -> list[LimitChange]:
    """The file's limits that differ from the registry's (pure)."""
    have = {limit.scope: limit for limit in current}
    return [LimitChange(limit, have.get(limit.scope)) for limit in wanted
            if have.get(limit.scope) != limit]  # fmt: skip


def diff(fleet: Fleet, path: str | None = None, *, force_recreate: bool = False) -> UpReport:
    """What `up` would do to converge the fleet to the fleet file (default ./ocm.toml)."""
    return _diff(fleet, read_fleet_file(path), force_recreate=force_recreate)


def _diff(fleet: Fleet, file: FleetFile, *, force_recreate: bool) -> UpReport:
    records = fleet.records()
    live = {r.name for r in records if is_live(r)}
    changes = plan(file.instances, records, file.project, force_recreate=force_recreate, live=live)
    current = [limit for limit, _ in limit_table.list_limits(fleet.registry)]
    return UpReport(file.project, changes, limits=limit_changes(file.limits, current))


def up(
    fleet: Fleet,
    path: str | None = None,
    *,
    recreate: bool = True,
    force_recreate: bool = False,
    remove_orphans: bool = False,
    timeout: float = lifecycle.DEFAULT_START_TIMEOUT,
    cancel: threading.Event | None = None,
) -> UpReport:
    """Converge to the fleet file: start what is missing in parallel, recreate what changed
    one at a time; only this file's project is ever touched. Setting `cancel` (Ctrl-C) stops
    what this run started, removes what it created, and raises Interrupted (what it had not
    reached is left as it was)."""
    file = read_fleet_file(path)
    report = _diff(fleet, file, force_recreate=force_recreate)
    conflicts = [c for c in report.changes if c.action is Action.CONFLICT]
    if conflicts:
        raise ConflictError(
            "; ".join(c.reason or c.name for c in conflicts)
            + ": rename it in the fleet file, or stop and `ocm rm` the other one"
        )
    _check_ports(file, [c for c in report.changes if c.action is Action.CREATE])
    if report.limits:  # before any instance: tasks sent to a new one already share them
        source = f"ocm.toml:{file.project}"
        limit_table.set_limits(fleet.registry, [c.limit for c in report.limits], source=source)
    by_action: dict[Action, list[Change]] = {}
    for change in report.changes:
        by_action.setdefault(change.action, []).append(change)
    for change in by_action.get(Action.UNCHANGED, []):
        if change.keys and change.spec is not None:  # task defaults: no restart needed
            fleet.registry.set_spec(change.name, _kept(fleet, change.spec))
    creates = [c.spec for c in by_action.get(Action.CREATE, []) if c.spec is not None]
    created: list[str] = []
    try:
        if creates:
            created = lifecycle.start(fleet, creates, timeout=timeout, cancel=cancel)
            report.done += created
        starts = {c.name: c.spec for c in by_action.get(Action.START, []) if c.spec is not None}
        if starts:
            _check(cancel)
            report.done += lifecycle.restart(
                fleet, list(starts), timeout=timeout, respec=starts, cancel=cancel
            )
        for change in by_action.get(Action.RECREATE, []) if recreate else []:
            assert change.spec is not None
            _check(cancel)
            report.done += lifecycle.restart(
                fleet, [change.name], timeout=timeout, respec={change.name: change.spec},
                cancel=cancel,
            )  # fmt: skip
    except Interrupted as exc:
        raise _undone(fleet, report.done, created, exc) from None
    if remove_orphans:
        orphans = [c.name for c in by_action.get(Action.ORPHAN, [])]
        live = [r.name for r in fleet.records() if r.name in orphans and is_live(r)]
        if live:
            lifecycle.stop(fleet, live)
        if orphans:
            report.done += lifecycle.remove(fleet, orphans)
    return report


def _check_ports(file: FleetFile, creates: Sequence[Change]) -> None:
    """A fixed port that is taken is the file's problem, named with its line, before
    anything starts."""
    taken = [
        c.spec
        for c in creates
        if c.spec is not None
        and c.spec.port is not None
        and not ports.port_free(c.spec.hostname, c.spec.port)
    ]
    if not taken:
        return
    try:
        lines = key_lines(file.path.read_text(encoding="utf-8"))
    except OSError:
        lines = {}
    problems = []
    for spec in taken:
        found = next(d for d in file.instances if d.name == spec.name)
        table = ("group", found.group) if found.group else ("instance", spec.name)
        path = (*table, "port") if (*table, "port") in lines else ("defaults", "port")
        line = line_of(lines, path) if lines else found.line
        message = f"port {spec.port} is already in use on {spec.hostname}"
        problems.append(Problem(line, ".".join(path[:2]), "port", message))
    raise FleetFileError(file.path, problems)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Interrupted("interrupted")


def _undone(fleet: Fleet, done: list[str], created: list[str], exc: Interrupted) -> Interrupted:
    """Stop what an interrupted `up` had started before (the step it was in undid its own),
    remove what it created; the error says what is left."""
    lifecycle.undo(fleet, done, remove=created)
    kept = [name for name in done if name not in created]
    # The interrupted step's own undo, as it said it ("oc-1, oc-2 stopped and removed").
    step = str(exc).partition(": ")[2]
    undone = [
        *([f"{', '.join(created)} stopped and removed"] if created else []),
        *([f"{', '.join(kept)} stopped"] if kept else []),
        *([step] if step else []),
    ]
    what = "; ".join(undone) if undone else "nothing started"
    return Interrupted(f"up interrupted: {what}; `ocm up` starts them again")


def down(
    fleet: Fleet, path: str | None = None, *, cancel: threading.Event | None = None
) -> list[lifecycle.StopResult]:
    """Stop every instance the fleet file's project created (they stay recorded: `ocm up`
    starts them). Setting `cancel` (Ctrl-C) stops no more of them: Interrupted says which
    still run."""
    project = read_fleet_file(path).project
    names = [r.name for r in fleet.records() if r.spec.project == project and is_live(r)]
    stopped: list[lifecycle.StopResult] = []
    for name in names:
        if cancel is not None and cancel.is_set():
            done = f"{', '.join(s.name for s in stopped)} stopped; " if stopped else ""
            rest = names[len(stopped) :]
            raise Interrupted(
                f"down interrupted: {done}{', '.join(rest)} still running "
                "(`ocm down` again stops them)"
            )
        stopped += lifecycle.stop(fleet, [name])
    return stopped


def _kept(fleet: Fleet, spec: InstanceSpec) -> InstanceSpec:
    """The stored spec with the file's task defaults (the rest is what runs)."""
    current = fleet.registry.get(spec.name).spec
    return InstanceSpec(**{**current.__dict__, "model": spec.model, "agent": spec.agent})
