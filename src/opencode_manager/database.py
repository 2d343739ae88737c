"""The registry's database: SQLite under $OCM_HOME, with connections, transactions, backups
and the schema's migrations; what the rows mean is registry.py's (instances) and
tasks/store.py's (tasks and batches).

Many processes use it at once (CLI invocations, one keeper per instance), so: WAL mode, short
transactions, ``BEGIN IMMEDIATE`` for every read-modify-write (SQLite's write lock is our
cross-process mutex), and a busy timeout. Each thread gets its own connection, so the async
facade can use it from worker threads. Schema changes are the named migration functions of
migrations.py, each recorded once in ``_migrations``.

Damage is reported, never papered over: a file that is not a database, or a registry that is
empty or missing although this OCM_HOME had one (the ``.created`` marker beside it), is refused
with the fix (`ocm restore`) instead of being re-created over the user's results.

The file may be replaced under a long-lived process (`ocm restore` swaps a backup in, see
dbfile.py): every access compares the file the path names with the one the thread's connection
opened, and reopens when they differ; `generation` counts the files seen, so a keeper can tell
that it must write its state again. Every write transaction holds dbfile's writers' lock
shared, so the swap never happens under a write.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import dbfile
from .errors import StateError
from .migrations import MIGRATIONS

BACKUPS_KEPT = 7
#: How long `close` waits for other threads to finish with their connections before it
#: closes them anyway (a query is milliseconds; a stuck one must not hold a shutdown).
CLOSE_WAIT = 10.0


def explain(path: Path, exc: BaseException) -> StateError:
    """A sqlite or OS error on the registry as a StateError a user can act on."""
    text = str(exc)
    if "not a database" in text or "malformed" in text or "file is encrypted" in text:
        return StateError(
            f"registry {path} is corrupt ({text}); it was left untouched: `ocm restore` "
            "brings back the newest backup (and keeps the damaged file)"
        )
    if "locked" in text or "busy" in text:
        return StateError(f"registry {path} is locked by another process; try again")
    if "disk is full" in text or "No space left" in text or "disk I/O" in text:
        return StateError(
            f"registry {path}: the disk is full ({text}); nothing was changed: free some "
            "space and run the command again"
        )
    if "readonly" in text or "unable to open" in text or "Permission denied" in text:
        return StateError(f"registry {path} is not writable ({text})")
    return StateError(f"registry {path}: {text}")


class Database:
    """The registry file: one connection per thread, write transactions, checks, backups."""

    def __init__(self, path: Path, *, timeout: float = 15.0) -> None:
        self.path = path
        self.marker = path.with_name(path.name + ".created")
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._writers: list[dbfile.WriterLock] = []  # one per thread, all closed by close()
        self._lock = threading.Lock()
        #: Connections in use (a query, a transaction, a backup) across threads: `close`
        #: waits for them, as closing a connection another thread is reading through can
        #: crash the interpreter (a front's worker thread at its shutdown did).
        self._idle = threading.Condition(self._lock)
        self._in_use = 0
        self._file: tuple[int, int] | None = None  # the file the newest connection opened
        self.generation = 0  # how many times the file was found replaced

    # -- connection ------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None and dbfile.file_id(self.path) != self._local.file:
            # Replaced (`ocm restore`) or removed: this connection reads a file that is no
            # longer the registry. Closing it is safe: SQLite does not checkpoint a moved
            # file nor delete the new file's -wal by name.
            self._forget(db)
            db = None
        if db is None:
            db = self._open()
            file = dbfile.file_id(self.path)
            self._local.db, self._local.file = db, file
            with self._lock:
                self._all.append(db)
                if file != self._file:
                    if self._file is not None:
                        self.generation += 1
                    self._file = file
        return db

    def _forget(self, db: sqlite3.Connection) -> None:
        with self._lock:
            if db in self._all:
                self._all.remove(db)
        self._local.db = None
        with contextlib.suppress(sqlite3.Error):
            db.close()

    def _writer_lock(self) -> dbfile.WriterLock:
        lock: dbfile.WriterLock | None = getattr(self._local, "writer", None)
        if lock is None:
            lock = self._local.writer = dbfile.WriterLock(dbfile.lock_path(self.path))
            with self._lock:
                self._writers.append(lock)
        return lock

    def _open(self) -> sqlite3.Connection:
        existed = self.marker.exists()
        if existed:
            self._refuse_if_emptied()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open registry {self.path}: {exc}") from exc
        db.row_factory = sqlite3.Row
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            if existed and not self._has_schema(db):
                raise StateError(self._emptied_message())
            self._migrate(db)
        except sqlite3.Error as exc:
            db.close()
            raise explain(self.path, exc) from exc
        except BaseException:
            db.close()
            raise
        self._private()
        if not existed:
            self._write_marker()
        return db

    def _has_schema(self, db: sqlite3.Connection) -> bool:
        rows = db.execute("SELECT 1 FROM sqlite_master WHERE name = '_migrations'").fetchall()
        return bool(rows)

    def _refuse_if_emptied(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        except OSError as exc:
            raise StateError(f"cannot read registry {self.path}: {exc.strerror or exc}") from exc
        if size == 0:
            raise StateError(self._emptied_message())

    def _emptied_message(self) -> str:
        backups = sorted((self.path.parent / "backups").glob("registry-*.db"))
        fix = (
            f"`ocm restore` brings back the newest backup ({backups[-1].name})"
            if backups
            else "`ocm restore FILE` brings back your own copy of it"
        )
        return (
            f"registry {self.path} is empty or missing, but this OCM_HOME had one "
            f"({self.marker.name}); refusing to start afresh over your instances and results: "
            f"{fix}, or delete {self.marker} to start with an empty registry"
        )

    def _write_marker(self) -> None:
        try:
            fd = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            raise StateError(f"cannot write {self.marker}: {exc.strerror or exc}") from exc
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{time.time():.0f}\n")

    def _private(self) -> None:
        """The registry holds prompts, results and --env values: owner-only, whatever umask."""
        for suffix in ("", "-wal", "-shm"):
            try:
                os.chmod(f"{self.path}{suffix}", 0o600)
            except OSError:
                continue

    def _migrate(self, db: sqlite3.Connection) -> None:
        done = set()
        if self._has_schema(db):
            done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
            if all(name in done for name, _ in MIGRATIONS):
                return  # the common case: no write lock needed to open
        with self._writer_lock().shared(self._timeout):
            self._apply_migrations(db)

    def _apply_migrations(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)"
            )
            done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
            for name, fn in MIGRATIONS:
                if name not in done:
                    fn(db)
                    db.execute(
                        "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                        (name, time.time()),
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @contextmanager
    def _using(self) -> Iterator[None]:
        """Marks this thread's connection in use, for `close` to wait on."""
        with self._idle:
            self._in_use += 1
        self._local.using = getattr(self._local, "using", 0) + 1
        try:
            yield
        finally:
            self._local.using -= 1
            with self._idle:
                self._in_use -= 1
                if not self._in_use:
                    self._idle.notify_all()

    def close(self) -> None:
        mine = getattr(self._local, "using", 0)  # a close from inside a use waits on others only
        with self._idle:
            self._idle.wait_for(lambda: self._in_use <= mine, timeout=CLOSE_WAIT)
            connections, self._all = self._all, []
        for db in connections:
            try:
                db.close()
            except sqlite3.Error:
                continue
        with self._lock:
            writers, self._writers = self._writers, []
        for writer in writers:
            writer.close()
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's lock: the cross-process mutex (and the
        writers' lock shared, so `ocm restore` never swaps the file under a write)."""
        with self._using(), self._writer_lock().shared(self._timeout), self._transaction() as db:
            yield db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise explain(self.path, exc) from exc
        try:
            yield db
        except sqlite3.Error as exc:
            _rollback(db)
            raise explain(self.path, exc) from exc
        except BaseException:
            _rollback(db)
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(db)
            raise explain(self.path, exc) from exc

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            with self._using():
                return list(self.db.execute(sql, params))
        except sqlite3.Error as exc:
            raise explain(self.path, exc) from exc

    # -- health ----------------------------------------------------------------------------
    def applied_migrations(self) -> list[str]:
        return [row[0] for row in self.query("SELECT name FROM _migrations ORDER BY name")]

    def compact(self) -> bool:
        """Give deleted rows' space back to the file system (VACUUM); best effort, since
        a keeper writing at that moment only means the file shrinks next time."""
        try:
            with self._using():
                self.db.execute("VACUUM")
        except sqlite3.Error:
            return False
        return True

    def quick_check(self) -> str:
        """SQLite's quick consistency check: "ok", or what is wrong (indexes not compared
        with their tables: see `integrity_check`)."""
        rows = self.query("PRAGMA quick_check(5)")
        return "; ".join(str(r[0]) for r in rows) or "ok"

    def integrity_check(self) -> str:
        """SQLite's full check, every index against its table: "ok", or what is wrong."""
        rows = self.query("PRAGMA integrity_check(5)")
        return "; ".join(str(r[0]) for r in rows) or "ok"

    def backup_daily(self, *, keep: int = BACKUPS_KEPT, now: float | None = None) -> Path | None:
        """Today's copy under backups/ (SQLite online backup), made once a day; old ones go.

        Returns the new backup's path, or None when today's exists already.
        """
        folder = self.path.parent / "backups"
        day = time.strftime("%Y%m%d", time.localtime(now))
        target = folder / f"registry-{day}.db"
        if target.exists():
            return None
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = folder / f".{target.name}.{os.getpid()}.tmp"
        try:
            copy = sqlite3.connect(tmp)
            try:
                with self._using():
                    self.db.backup(copy)
            finally:
                copy.close()
            os.chmod(tmp, 0o600)
            found = dbfile.integrity(tmp, snapshot=True)
            if found != dbfile.OK:
                # A damaged registry must not push a good copy out of the seven kept.
                tmp.unlink(missing_ok=True)
                raise StateError(
                    f"registry {self.path} fails integrity_check ({found}); no backup made: "
                    "`ocm restore` brings back the newest good one"
                )
            os.replace(tmp, target)
        except (OSError, sqlite3.Error) as exc:
            tmp.unlink(missing_ok=True)
            raise explain(self.path, exc) from exc
        for old in sorted(folder.glob("registry-*.db"))[:-keep]:
            old.unlink(missing_ok=True)
        return target


def _rollback(db: sqlite3.Connection) -> None:
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        return
