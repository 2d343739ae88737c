"""`ocm save` / `ocm resurrect`, like PM2's: the running fleet written to $OCM_HOME/dump.json,
and brought back from it after a reboot.

The dump holds each running instance's name, spec and port; passwords stay in
$OCM_HOME/secrets (a restart keeps them), and the file is 0600 in the private $OCM_HOME, so the
`env` values of the specs (the user's own settings) are kept as they are. A save never leaves a
half-written dump: the new one is written and synced under a temporary name, the old one copied
to dump.json.bak, and only then is the new one renamed over it.

Resurrect starts what the dump holds and is not running, with the saved spec, and never touches
an instance the dump does not name. A record is the saved instance when its creation time
matches, or its settings do (an earlier resurrect re-created it): a different instance that
took a saved name since is left alone.

    saved, and now ...                         resurrect
    running or starting                        left alone         (report.running)
    stopped, crashed, errored, or dead         restarted          (lifecycle.restart, respec)
    not recorded any more                      started            (lifecycle.start, its old port
                                                                   when that is free)
    being stopped, or another instance         left alone         (report.skipped, with why)

Resurrects take turns (a lock in $OCM_HOME/locks): two at once (a login unit and a person)
would otherwise both start the same instances, the second stopping what the first started,
and fail with a false cause. The second waits for the first, then finds its instances running.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import (
    ConflictError,
    Interrupted,
    NotFoundError,
    OcmError,
    StartError,
    StateError,
    UsageError,
)
from ..models import DesiredState, InstanceRecord, InstanceSpec, ProcessIdentity, State
from ..settings import Settings
from . import lifecycle, ports
from .fleet import Fleet, is_live

DUMP_FILE = "dump.json"  # $OCM_HOME/dump.json; the previous one is kept as dump.json.bak
DUMP_VERSION = 1

#: Whether anything of an instance still runs (fleet.is_live; a plain function in tests).
Liveness = Callable[[InstanceRecord], bool]


@dataclass
class SavedInstance:
    """One instance as saved: resurrect reuses its port when it is free."""

    name: str
    spec: InstanceSpec
    port: int | None
    created_at: float | None = None  # its identity with the name: a newer namesake is another

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.port, "created_at": self.created_at,
                "spec": asdict(self.spec)}  # fmt: skip


@dataclass
class Dump:
    """What `ocm save` wrote."""

    version: int
    saved_at: float
    instances: list[SavedInstance]

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "saved_at": self.saved_at,
                "instances": [i.to_dict() for i in self.instances]}  # fmt: skip


@dataclass
class SaveReport:
    path: str
    saved: list[str]
    replaced_backup: str | None  # where the previous dump went (None: there was none)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ResurrectReport:
    started: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)  # already running: left alone
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it was left alone
    failed: dict[str, str] = field(default_factory=dict)  # name -> why it did not start
    waited_for: int | None = None  # the pid of another resurrect this one waited for

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dump_path(settings: Settings) -> Path:
    return settings.home / DUMP_FILE


def backup_path(settings: Settings) -> Path:
    return settings.home / f"{DUMP_FILE}.bak"


# -- save ------------------------------------------------------------------------------------
def is_running(record: InstanceRecord, live: Liveness = is_live) -> bool:
    """Counts as running for a save: running or starting, something of it alive, and no stop
    requested."""
    return (
        record.state in (State.RUNNING, State.STARTING)
        and record.desired is not DesiredState.STOPPED
        and live(record)
    )


def save(fleet: Fleet, *, force: bool = False) -> SaveReport:
    """Write the running fleet to $OCM_HOME/dump.json (the previous dump kept as .bak)."""
    records = [r for r in fleet.records() if is_running(r)]
    if not records and not force:
        raise UsageError(
            "nothing is running: saving would replace the dump with an empty one; use --force"
        )
    dump = Dump(
        version=DUMP_VERSION,
        saved_at=time.time(),
        instances=[SavedInstance(r.name, r.spec, r.port, r.created_at) for r in records],
    )
    settings = fleet.settings
    settings.ensure_home()
    text = json.dumps(dump.to_dict(), indent=2) + "\n"
    path, backup = dump_path(settings), backup_path(settings)
    replaced = _replace_atomically(path, backup, text.encode())
    return SaveReport(
        path=str(path),
        saved=[i.name for i in dump.instances],
        replaced_backup=str(backup) if replaced else None,
    )


def _replace_atomically(path: Path, backup: Path, data: bytes) -> bool:
    """Put `data` at `path`, the old content at `backup`; True if there was old content.

    `path` always holds a whole dump, the old one or the new one: the new one is complete and
    synced before the rename that swaps it in, and the backup is a copy (moving the old dump
    away first would leave a moment with no dump at all)."""
    pid = os.getpid()
    tmp = path.with_name(f"{path.name}.{pid}.tmp")
    backup_tmp = backup.with_name(f"{backup.name}.{pid}.tmp")
    try:
        _write_private(tmp, data)
        try:
            old: bytes | None = path.read_bytes()
        except FileNotFoundError:
            old = None
        if old is not None:
            _write_private(backup_tmp, old)
            os.replace(backup_tmp, backup)
        os.replace(tmp, path)
        _sync_dir(path.parent)
    except OSError as exc:
        raise StateError(
            f"cannot save the fleet to {path}: {exc.strerror or exc}; the previous dump is "
            "unchanged"
        ) from exc
    finally:
        for leftover in (tmp, backup_tmp):
            with contextlib.suppress(OSError):
                leftover.unlink()
    return old is not None


def _write_private(path: Path, data: bytes) -> None:
    """Write and sync a new file, 0600 from the first byte."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a leftover of a crashed save: O_EXCL below makes a new one
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_dir(directory: Path) -> None:
    """Make the renames durable (a power cut right after a save keeps the new dump)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- load ------------------------------------------------------------------------------------
def load_dump(settings: Settings) -> Dump:
    """The saved fleet, or a StateError saying what is wrong with the dump and what to do."""
    path = dump_path(settings)
    try:
        text = path.read_text()
    except FileNotFoundError:
        hint = ""
        if backup_path(settings).exists():
            hint = f" (a previous one is at {backup_path(settings)}: rename it to use it)"
        raise NotFoundError(
            f"no saved fleet at {path}{hint}; `ocm save` writes one while the fleet runs"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StateError(f"cannot read the dump {path}: {reason}") from exc
    return parse_dump(text, path)


def parse_dump(text: str, path: Path) -> Dump:
    """A dump from its text (pure); `path` names the file in errors."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _damaged(path, f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _damaged(path, "not a JSON object")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _damaged(path, f"no valid version (found {version!r})")
    if version > DUMP_VERSION:
        raise StateError(
            f"the dump {path} was written by a newer ocm (format {version}; this one reads "
            f"{DUMP_VERSION}): upgrade opencode-manager, or `ocm save` again to replace it"
        )
    saved_at, items = data.get("saved_at"), data.get("instances")
    if not isinstance(saved_at, (int, float)) or isinstance(saved_at, bool):
        raise _damaged(path, "no valid saved_at")
    if not isinstance(items, list):
        raise _damaged(path, "no list of instances")
    instances: list[SavedInstance] = []
    for index, item in enumerate(items):
        saved = _saved_instance(item)
        if saved is None:
            raise _damaged(path, f"instance #{index + 1} is not valid")
        if saved.name in {i.name for i in instances}:
            raise _damaged(path, f"{saved.name} is listed twice")
        instances.append(saved)
    return Dump(version=version, saved_at=float(saved_at), instances=instances)


def _saved_instance(item: Any) -> SavedInstance | None:
    if not isinstance(item, dict):
        return None
    name, port, created = item.get("name"), item.get("port"), item.get("created_at")
    raw = item.get("spec")
    if not isinstance(name, str) or not name or not isinstance(raw, dict):
        return None
    if port is not None and (not isinstance(port, int) or isinstance(port, bool)):
        return None
    if created is not None and (not isinstance(created, (int, float)) or isinstance(created, bool)):
        return None
    try:
        spec = InstanceSpec.from_json(json.dumps(raw))
    except (TypeError, ValueError):
        return None
    if spec.name != name or not isinstance(spec.dir, str):
        return None
    if spec.port is not None and (not isinstance(spec.port, int) or isinstance(spec.port, bool)):
        return None
    return SavedInstance(name, spec, port, float(created) if created is not None else None)


def _damaged(path: Path, why: str) -> StateError:
    backup = path.with_name(f"{path.name}.bak")
    return StateError(
        f"the dump {path} is damaged ({why}); copy {backup} over it if that one is good, "
        "or `ocm save` again while the fleet runs"
    )


# -- resurrect -------------------------------------------------------------------------------
@dataclass
class Plan:
    """What resurrect does with each saved instance (pure: see `plan`)."""

    running: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    restart: dict[str, InstanceSpec] = field(default_factory=dict)  # recorded, not running
    create: list[SavedInstance] = field(default_factory=list)  # no longer recorded


def same_instance(record: InstanceRecord, saved: SavedInstance) -> bool:
    """The saved instance (same creation time), or one made with its very settings (what an
    earlier resurrect re-created); the binary path found at start does not count."""
    if saved.created_at is None or record.created_at == saved.created_at:
        return True
    return replace(record.spec, opencode=None) == replace(saved.spec, opencode=None)


def plan(dump: Dump, records: Sequence[InstanceRecord], live: Liveness = is_live) -> Plan:
    """Sort the saved instances by what the registry says of their names now."""
    by_name = {r.name: r for r in records}
    result = Plan()
    for saved in dump.instances:
        record = by_name.get(saved.name)
        if record is None:
            result.create.append(saved)
        elif not same_instance(record, saved):
            result.skipped[saved.name] = (
                f"a different instance named {saved.name} exists (made after the save, with "
                f"other settings); `ocm rm {saved.name}` it to bring the saved one back"
            )
        elif not live(record):
            result.restart[saved.name] = saved.spec
        elif (
            record.state in (State.RUNNING, State.STARTING)
            and record.desired is not DesiredState.STOPPED
        ):
            result.running.append(saved.name)
        elif record.state in (State.STOPPING, State.RUNNING, State.STARTING):
            result.skipped[saved.name] = (
                f"{saved.name} is being stopped; run `ocm resurrect` again once it has stopped"
            )
        else:  # recorded as ended with something of it still alive: restart ends that first
            result.restart[saved.name] = saved.spec
    return result


def resurrect(
    fleet: Fleet,
    *,
    timeout: float = lifecycle.DEFAULT_START_TIMEOUT,
    cancel: threading.Event | None = None,
) -> ResurrectReport:
    """Start what the dump holds and is not running: same names, settings and (when free)
    ports. Failures to start are reported per instance; the others start anyway. Setting
    `cancel` (Ctrl-C) stops what this call started again and raises Interrupted."""
    if timeout <= 0:
        raise UsageError(f"invalid --timeout {timeout:g}: must be above 0")
    dump = load_dump(fleet.settings)
    with _one_at_a_time(fleet.settings, timeout, cancel) as waited_for:
        report = _resurrect(fleet, dump, timeout, cancel)
    report.waited_for = waited_for
    return report


LOCK_MARGIN = 30.0  # beyond the other resurrect's own start deadline


@contextlib.contextmanager
def _one_at_a_time(
    settings: Settings, timeout: float, cancel: threading.Event | None = None
) -> Iterator[int | None]:
    """Hold the resurrect lock; yield the pid of the resurrect waited for, if any.

    A lock held longer than a resurrect can take (its start deadline, plus a margin) is
    reported, not broken: the other process may still be starting instances."""
    settings.ensure_home()
    path = settings.locks_dir / "resurrect.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        holder: int | None = None
        deadline = time.monotonic() + timeout + LOCK_MARGIN
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if holder is None:
                    holder = _holder(fd)
                if cancel is not None and cancel.is_set():
                    raise Interrupted(
                        f"resurrect interrupted while waiting for another `ocm resurrect` "
                        f"(pid {holder or '?'}); nothing started"
                    ) from None
                if time.monotonic() > deadline:
                    raise ConflictError(
                        f"another `ocm resurrect` (pid {holder or '?'}) is still starting the "
                        "saved fleet; run this again once it is done"
                    ) from None
                time.sleep(0.1)  # waiting for the other resurrect, with a deadline
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield holder
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None


def _resurrect(
    fleet: Fleet, dump: Dump, timeout: float, cancel: threading.Event | None = None
) -> ResurrectReport:
    report = ResurrectReport()
    try:
        return _bring_back(fleet, dump, timeout, cancel, report)
    except Interrupted as exc:
        # The step it was in stopped its own; what came up before goes down again.
        lifecycle.undo(fleet, report.started)
        undone = [f"{', '.join(report.started)} stopped"] if report.started else []
        step = str(exc).partition(": ")[2]
        what = "; ".join([*undone, *([step] if step else [])]) or "nothing started"
        raise Interrupted(
            f"resurrect interrupted: {what}; `ocm resurrect` brings them back"
        ) from None


def _bring_back(
    fleet: Fleet,
    dump: Dump,
    timeout: float,
    cancel: threading.Event | None,
    report: ResurrectReport,
) -> ResurrectReport:
    records = {r.name: r for r in fleet.records()}
    todo = plan(dump, list(records.values()))
    report.running, report.skipped = todo.running, todo.skipped
    restart = {
        name: spec
        for name, spec in todo.restart.items()
        # What still lingers of an instance holds its own port: restart ends it first.
        if _startable(spec, report, port_check=not is_live(records[name]))
    }
    if restart:
        names = list(restart)
        again = partial(
            lifecycle.restart, fleet, names, timeout=timeout, respec=restart, cancel=cancel
        )
        _attempt(fleet, report, names, again)
    create = [s for s in todo.create if _startable(s.spec, report)]
    if create:
        specs, pinned = _placed(fleet, create)
        try:
            if cancel is not None and cancel.is_set():
                raise Interrupted("interrupted")
            start = partial(lifecycle.start, fleet, specs, timeout=timeout, cancel=cancel)
            _attempt(fleet, report, [s.name for s in specs], start)
        finally:
            _unpin(fleet, pinned)
    order = {s.name: i for i, s in enumerate(dump.instances)}
    report.started.sort(key=order.__getitem__)
    return report


def _startable(spec: InstanceSpec, report: ResurrectReport, *, port_check: bool = True) -> bool:
    """Whether to try; if not (its project directory is gone, its fixed port is taken), say
    why in the report: one such instance would otherwise fail the whole parallel start."""
    if not os.path.isdir(spec.dir):
        report.failed[spec.name] = f"its directory {spec.dir} is gone"
        return False
    if port_check and spec.port is not None and not ports.port_free(spec.hostname, spec.port):
        report.failed[spec.name] = f"port {spec.port} is already in use on {spec.hostname}"
        return False
    return True


def _placed(
    fleet: Fleet, create: list[SavedInstance]
) -> tuple[list[InstanceSpec], dict[str, InstanceSpec]]:
    """The specs to start, an automatic port pinned to the saved one while that is free (and
    no other instance claims it); the pinned specs by name, which `_unpin` undoes."""
    with fleet.registry.transaction() as db:
        claimed = fleet.registry.claimed_ports(db)
    specs, pinned = [], {}
    for saved in create:
        spec = saved.spec
        automatic = spec.port is None and spec.port_range is None
        if (
            automatic
            and saved.port is not None
            and saved.port not in claimed
            and ports.port_free(spec.hostname, saved.port)
        ):
            spec = replace(spec, port=saved.port)
            pinned[spec.name] = spec
        specs.append(spec)
    return specs, pinned


def _unpin(fleet: Fleet, pinned: dict[str, InstanceSpec]) -> None:
    """Record the saved (automatic) port setting again; the row keeps the port it got, which
    is what a later restart reuses while it is free. Only rows this start made: a namesake
    somebody else started meanwhile is not ours to change."""
    for name, spec in pinned.items():
        with contextlib.suppress(OcmError):
            current = fleet.registry.get(name).spec
            if replace(current, opencode=None) == replace(spec, opencode=None):
                fleet.registry.set_spec(name, replace(current, port=None))


def _attempt(
    fleet: Fleet, report: ResurrectReport, names: list[str], run: Callable[[], list[str]]
) -> None:
    """One parallel start; on failure, which of `names` came up and why the others did not."""
    try:
        report.started += run()
    except (StartError, ConflictError) as exc:
        starter = lifecycle.me()
        for name in names:
            record = fleet.registry.find(name)
            if record is not None and record.state is State.RUNNING:
                report.started.append(name)
                continue
            if exc.instance in (None, name) or record is None:
                report.failed[name] = str(exc)
            else:
                why = record.error or "it did not come up"
                report.failed[name] = f"{why}; see `ocm logs {name}`"
            if record is not None and _never_launched(record, starter):
                # The start gave up before launching its keeper: nobody else will.
                with contextlib.suppress(OcmError):
                    fleet.registry.mark_crashed(name, f"not started: {exc}")


def _never_launched(record: InstanceRecord, starter: ProcessIdentity | None) -> bool:
    return (
        record.state is State.STARTING
        and record.keeper is None
        and record.server is None
        and record.starter == starter
    )
