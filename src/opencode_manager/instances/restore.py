"""`ocm restore`: a damaged registry replaced by a backup while the fleet keeps running.

The registry is the only place that says what runs, so a damaged one must be replaced, never
started afresh, and never by copying a backup over ``registry.db`` (that leaves the old WAL
beside it, whose frames SQLite then replays onto the backup: ``ls`` lists an instance that
``status`` cannot find). The steps:

1. the backup (the newest under ``backups/`` unless one is named) passes ``integrity_check``;
   the current file must fail it (or be missing), unless ``force``;
2. the keepers of this OCM_HOME that have the registry open are found (their command line
   names this home, and /proc shows the file among their open files);
3. the file is swapped (dbfile.swap_in: a synced copy renamed into place with every writer
   paused; the replaced file with its -wal and -shm is kept under ``backups/``);
4. the new file is opened (migrated, if the backup is older) and checked again;
5. the keepers are woken (SIGUSR1, which only makes a keeper look at its registry): each
   finds the file replaced, reopens it and writes its whole row into it, inserting it when the
   backup predates the instance (keeper/row.py); restore waits for them, with a deadline;
6. rows of the backup that say running while nothing of them runs are recorded as crashed,
   with that reason, so ``ls`` and ``doctor`` do not show a cause of None.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .. import dbfile, process
from ..errors import ConflictError, NotFoundError, OcmError, StateError
from ..models import State
from ..registry import Registry
from ..settings import Settings
from .fleet import is_live

BACKUP_GLOB = "registry-*.db"
REJOIN_WAIT = 15.0  # how long to wait for the keepers to write their rows back
SWAP_TIMEOUT = 15.0  # how long to wait for writers in flight
NOT_RUNNING = "not running when the registry was restored (how it ended was not in the backup)"


@dataclass
class Backup:
    """One registry backup (`ocm restore --list`)."""

    name: str
    path: str
    size: int
    made_at: float
    integrity: str  # "ok", or what `integrity_check` found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RestoreReport:
    """What `restore` did."""

    registry: str
    backup: str
    before: str  # what integrity_check said of the replaced file ("missing" if there was none)
    after: str  # and of the restored one
    kept: str | None  # where the replaced file is kept (with its -wal and -shm)
    instances: int  # rows in the restored registry
    rejoined: list[str] = field(default_factory=list)  # running keepers that wrote their rows
    waiting: list[str] = field(default_factory=list)  # keepers that had not yet, at the end
    reconciled: list[str] = field(default_factory=list)  # rows said running; nothing runs

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary()}

    def summary(self) -> str:
        """One line: what was done."""
        parts = [
            f"restored {self.registry} from {self.backup} (integrity_check {self.after}; "
            f"{self.instances} instance(s) recorded)"
        ]
        if self.kept:
            parts.append(f"the replaced file ({self.before}) is kept as {self.kept}")
        if self.rejoined:
            parts.append(f"running keepers wrote their state back: {', '.join(self.rejoined)}")
        if self.waiting:
            parts.append(
                f"not written back yet: {', '.join(self.waiting)} (their keepers do at their "
                "next health check)"
            )
        if self.reconciled:
            parts.append(f"recorded as not running: {', '.join(self.reconciled)}")
        return "; ".join(parts)


def backups_dir(settings: Settings) -> Path:
    return settings.home / "backups"


def backups(settings: Settings) -> list[Backup]:
    """The registry backups, newest first, each checked."""
    found = []
    for path in sorted(backups_dir(settings).glob(BACKUP_GLOB), reverse=True):
        try:
            st = path.stat()
        except OSError:
            continue
        verdict = dbfile.integrity(path, snapshot=True)
        found.append(Backup(path.name, str(path), st.st_size, st.st_mtime, verdict))
    return found


def choose(settings: Settings, backup: str | None) -> Path:
    """The backup named (a path, or a name under backups/), or the newest one."""
    folder = backups_dir(settings)
    if backup is None:
        newest = sorted(folder.glob(BACKUP_GLOB))
        if not newest:
            raise NotFoundError(
                f"no registry backups in {folder}; give the file to restore: `ocm restore FILE`"
            )
        return newest[-1]
    for candidate in (Path(backup).expanduser(), folder / backup, folder / f"registry-{backup}.db"):
        if candidate.is_file():
            return candidate.absolute()
    names = ", ".join(p.name for p in sorted(folder.glob(BACKUP_GLOB))) or "none"
    raise NotFoundError(f"no backup {backup!r} (backups in {folder}: {names})")


def restore(
    settings: Settings,
    backup: str | None = None,
    *,
    force: bool = False,
    wait: float = REJOIN_WAIT,
) -> RestoreReport:
    """Replace the registry with a backup, atomically, while keepers run (see the module)."""
    path = settings.registry_path
    source = choose(settings, backup)
    checked = dbfile.integrity(source, snapshot=True)
    if checked != dbfile.OK:
        raise StateError(
            f"backup {source} fails integrity_check ({checked}); pick another: `ocm restore --list`"
        )
    before = dbfile.integrity(path)
    if before == dbfile.OK and not force:
        raise ConflictError(
            f"registry {path} passes integrity_check: nothing to repair; `ocm restore --force` "
            f"replaces it with {source.name} anyway (what it holds now is kept under "
            f"{backups_dir(settings)})"
        )
    keepers = find_keepers(settings)
    aside = _aside(settings)
    kept = aside if dbfile.swap_in(path, source, aside=aside, timeout=SWAP_TIMEOUT) else None
    started = time.time()
    registry = Registry(path, timeout=settings.registry_timeout)
    try:
        after = registry.integrity_check()
        report = RestoreReport(
            registry=str(path),
            backup=str(source),
            before=before,
            after=after,
            kept=str(kept) if kept else None,
            instances=len(registry.instances()),
        )
        for proc in keepers.values():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGUSR1)  # psutil checks it is still that process
        report.rejoined, report.waiting = _await_rejoined(registry, keepers, started, wait)
        report.reconciled = _reconcile(registry, set(report.waiting))
        report.instances = len(registry.instances())
    finally:
        registry.close()
    return report


def find_keepers(settings: Settings) -> dict[str, psutil.Process]:
    """The keepers of this OCM_HOME that have its registry open, by instance name.

    Only read, never signalled on this alone: what proves a keeper ours is its command line
    (`python -m opencode_manager.keeper --home HOME NAME`, our user) together with the
    registry file among its open files; a woken keeper only looks at its registry again.
    """
    home = os.path.realpath(settings.home)
    registry = os.path.realpath(settings.registry_path)
    uid = os.getuid()
    found: dict[str, psutil.Process] = {}
    for proc in psutil.process_iter(["uids", "cmdline"]):
        try:
            argv = proc.info["cmdline"] or []
            uids = proc.info["uids"]
            if uids is None or uids.real != uid or not process.is_keeper_argv(argv):
                continue
            if "--home" not in argv[:-1] or len(argv) < 2:
                continue
            if os.path.realpath(argv[argv.index("--home") + 1]) != home:
                continue
            if not any(os.path.realpath(f.path) == registry for f in proc.open_files()):
                continue
            found[argv[-1]] = proc
        except (psutil.Error, OSError, ValueError, IndexError):
            continue
    return found


def _aside(settings: Settings) -> Path:
    """Where the replaced file goes: beside the backups, never pruned with them."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = backups_dir(settings)
    target = folder / f"replaced-{stamp}.db"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"replaced-{stamp}-{n}.db"
    return target


def _await_rejoined(
    registry: Registry, keepers: dict[str, psutil.Process], since: float, wait: float
) -> tuple[list[str], list[str]]:
    """Poll the restored registry until each keeper's row names it (or the deadline)."""
    deadline = time.monotonic() + wait
    pending = dict(keepers)
    done: list[str] = []
    while pending:
        for name, proc in list(pending.items()):
            with contextlib.suppress(OcmError):
                record = registry.find(name)
                if not proc.is_running():
                    del pending[name]  # ended meanwhile: nothing to wait for
                elif (
                    record is not None
                    and record.keeper is not None
                    and (record.keeper.pid == proc.pid and record.updated_at >= since)
                ):
                    del pending[name]
                    done.append(name)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # polling the registry, with a deadline
    return sorted(done), sorted(pending)


def _reconcile(registry: Registry, waiting: set[str]) -> list[str]:
    """Rows of the backup that say running although nothing of them runs now."""
    reconciled = []
    for record in registry.instances():
        if record.spec.remote or record.name in waiting:
            continue
        if record.state in (State.RUNNING, State.STARTING, State.STOPPING) and not is_live(record):
            with contextlib.suppress(OcmError):
                registry.mark_crashed(record.name, NOT_RUNNING)
                reconciled.append(record.name)
    return reconciled
