"""The registry as files on disk: a file's integrity, the writers' lock, and the swap that
`ocm restore` makes.

A WAL database is three files (``registry.db``, ``-wal``, ``-shm``), and SQLite replays
whatever ``-wal`` lies beside the main file when it opens it. So a registry is never replaced
by copying a backup over ``registry.db`` (the old WAL's frames land on the backup's pages: an
index that disagrees with its table); it is swapped: the backup copied to a temporary file in
the same directory and synced, the old WAL and shared-memory files moved aside with the old
file, and the copy renamed into place, all while no process writes.

"While no process writes" is the writers' lock, a `flock` on ``registry.lock`` beside the
database: every write transaction holds it shared for its few milliseconds; the swap holds it
exclusive. A process still connected to the old file notices on its next access that the path
names another file (device and inode) and reopens it (`registry.Registry.db`). SQLite itself
leaves a moved file's WAL alone when a stale connection closes (it checks that the file has not
moved before it checkpoints and deletes ``-wal`` by name), which makes the swap safe for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from .errors import StateError

#: What `integrity` reports for a sound file.
OK = "ok"
WAL_FILES = ("-wal", "-shm")
LOCK_POLL = 0.01  # seconds between tries of a lock held by someone else


def lock_path(path: Path) -> Path:
    """The writers' lock of the database at `path` (``registry.db`` -> ``registry.lock``)."""
    return path.with_name(path.stem + ".lock")


def file_id(path: Path) -> tuple[int, int] | None:
    """Which file the path names now (device, inode), or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def integrity(path: Path, *, snapshot: bool = False) -> str:
    """SQLite's full `integrity_check` of the file at `path`, read-only: "ok", or what is
    wrong (the first problems, or why it cannot be read at all).

    `snapshot`: a file nobody writes (a backup, a copy): opened immutable, so nothing is
    created beside it. Otherwise the live database is read with its WAL, as SQLite would.
    Unlike `quick_check`, this compares every index with its table, which is what a stale
    WAL replayed onto another file breaks.
    """
    if not path.exists():
        return "missing"
    mode = "ro&immutable=1" if snapshot else "ro"
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?mode={mode}", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = db.execute("PRAGMA integrity_check(5)").fetchall()
        found = "; ".join(str(row[0]) for row in rows) or OK
        if (
            found == OK
            and not db.execute("SELECT 1 FROM sqlite_master WHERE name = '_migrations'").fetchall()
        ):
            return "not an ocm registry (no _migrations table)"
        return found
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        db.close()


class WriterLock:
    """One thread's hold on the writers' lock (shared by writers, exclusive for a swap).

    Each thread opens its own descriptor: `flock` locks belong to an open file, so two threads
    sharing one would release each other's hold. Holds nest (a transaction that opens the
    connection, which migrates). Without a lock file (a full disk, a read-only directory)
    writers go on unlocked: a write must never fail for want of it; a swap refuses.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._depth = 0

    def _open(self) -> int | None:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                return None
        return self._fd

    @contextlib.contextmanager
    def shared(self, timeout: float) -> Iterator[None]:
        """Held around every write transaction; waits (up to `timeout`) only for a swap."""
        if self._depth == 0:
            fd = self._open()
            if fd is not None:
                _acquire(fd, fcntl.LOCK_SH, timeout, self.path)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _acquire(fd: int, kind: int, timeout: float, path: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                what = "a restore" if kind == fcntl.LOCK_SH else "writers"
                raise StateError(f"the registry is busy: {what} hold {path}; try again") from None
            time.sleep(LOCK_POLL)  # waiting for the other holder, with a deadline


@contextlib.contextmanager
def writers_paused(path: Path, timeout: float) -> Iterator[None]:
    """No process writes to the database at `path` while this is held (the lock exclusive)."""
    where = lock_path(path)
    try:
        fd = os.open(where, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(f"cannot lock {where}: {exc.strerror or exc}") from exc
    try:
        _acquire(fd, fcntl.LOCK_EX, timeout, where)
        yield
    finally:
        os.close(fd)  # releases the lock


def copy_synced(source: Path, target: Path) -> None:
    """`source` copied to `target` (0600) and on disk before this returns."""
    import shutil  # here: every command opens the registry, few copy it

    with open(source, "rb") as src, open(target, "wb") as dst:
        os.fchmod(dst.fileno(), 0o600)
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())


def sync_dir(path: Path) -> None:
    """A rename in `path` is on disk (best effort: some file systems refuse to sync a dir)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def swap_in(path: Path, source: Path, *, aside: Path, timeout: float) -> bool:
    """Put a copy of the database file `source` at `path`, atomically, keeping what was
    there (with its -wal and -shm) at `aside`. Returns whether there was a file to keep.

    The copy is made and checked before anything is touched; the rename is done with every
    writer paused, after the old -wal and -shm have gone, so no stale WAL is ever replayed
    onto the new file.
    """
    tmp = path.with_name(f".{path.name}.restore-{os.getpid()}")
    try:
        copy_synced(source, tmp)
        found = integrity(tmp, snapshot=True)
        if found != OK:
            raise StateError(
                f"the copy of {source} fails integrity_check ({found}); nothing changed"
            )
        aside.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with writers_paused(path, timeout):
            kept = path.exists()
            if kept:
                try:
                    os.link(path, aside)  # the damaged file stays reachable, and the path too
                except OSError:
                    os.rename(path, aside)
            for suffix in WAL_FILES:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(f"{path}{suffix}", f"{aside}{suffix}")
            os.replace(tmp, path)
            sync_dir(path.parent)
        return kept
    except OSError as exc:
        raise StateError(
            f"could not restore {path} from {source}: {exc.strerror or exc}; nothing changed"
            if not aside.exists()
            else f"could not finish restoring {path} from {source}: {exc.strerror or exc} "
            f"(the previous file is kept at {aside})"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
