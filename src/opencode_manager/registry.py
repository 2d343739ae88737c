"""The registry: SQLite under $OCM_HOME, the source of truth for what we own.

Many processes use it at once (CLI invocations, one keeper per instance), so: WAL mode, short
transactions, ``BEGIN IMMEDIATE`` for every read-modify-write (SQLite's write lock is our
cross-process mutex), and a busy timeout. Each thread gets its own connection, so the async
facade can use it from worker threads. Schema changes are named migration functions, each
recorded once in ``_migrations``.

State changes are named transitions (`mark_running`, `request_stop`, ...), not free-form updates:
the instance row holds the observed state (what the keeper saw) and the desired state (what ocm
asked for: a stop, with its timeout), which the keeper's reconcile loop acts on.

Damage is reported, never papered over: a file that is not a database, or a registry that is
empty or missing although this OCM_HOME had one (the ``.created`` marker beside it), is refused
with the fix (`ocm restore`) instead of being re-created over the user's results.

The file may be replaced under a long-lived process (`ocm restore` swaps a backup in, see
dbfile.py): every access compares the file the path names with the one the thread's connection
opened, and reopens when they differ; `generation` counts the files seen, so a keeper can tell
that it must write its state again.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import dbfile
from .errors import ConflictError, NotFoundError, StateError
from .models import (
    KEEPER_CMD,
    SERVER_CMD,
    EventKind,
    InstanceRecord,
    InstanceSpec,
    LifecycleEvent,
    ProcessIdentity,
    ResourceSample,
    State,
)

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []
BACKUPS_KEPT = 7
SAMPLE_HISTORY_S = 1800.0  # the keeper's samples kept per instance (30 minutes)


def migration(name: str) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        MIGRATIONS.append((name, fn))
        return fn

    return register


@migration("m001_instances")
def _m001_instances(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE instances (
            name          TEXT PRIMARY KEY,
            spec          TEXT NOT NULL,
            state         TEXT NOT NULL,
            keeper_pid    INTEGER,
            keeper_ctime  REAL,
            server_pid    INTEGER,
            server_ctime  REAL,
            port          INTEGER,
            url           TEXT,
            version       TEXT,
            restarts      INTEGER NOT NULL DEFAULT 0,
            last_exit     TEXT,
            error         TEXT,
            created_at    REAL NOT NULL,
            updated_at    REAL NOT NULL,
            started_at    REAL,
            stopped_at    REAL
        )
        """
    )


@migration("m002_tasks_and_batches")
def _m002_tasks(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE batches (
            id           TEXT PRIMARY KEY,
            source       TEXT,
            options      TEXT NOT NULL,
            status       TEXT NOT NULL,
            created_at   REAL NOT NULL,
            updated_at   REAL NOT NULL,
            finished_at  REAL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE tasks (
            id           TEXT PRIMARY KEY,
            batch_id     TEXT REFERENCES batches(id),
            seq          INTEGER NOT NULL DEFAULT 0,
            status       TEXT NOT NULL,
            prompt       TEXT NOT NULL,
            record       TEXT NOT NULL,
            created_at   REAL NOT NULL,
            updated_at   REAL NOT NULL,
            finished_at  REAL
        )
        """
    )
    db.execute("CREATE INDEX tasks_by_batch ON tasks (batch_id, seq)")
    db.execute("CREATE INDEX tasks_by_status ON tasks (status)")


@migration("m003_events")
def _m003_events(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE events (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            instance  TEXT NOT NULL,
            time      REAL NOT NULL,
            kind      TEXT NOT NULL,
            detail    TEXT
        )
        """
    )
    db.execute("CREATE INDEX events_by_instance ON events (instance, id)")


@migration("m004_samples")
def _m004_samples(db: sqlite3.Connection) -> None:
    # Figures the keeper samples every health interval, so `ocm ls` need not wait to measure.
    db.execute("ALTER TABLE instances ADD COLUMN cpu_percent REAL")
    db.execute("ALTER TABLE instances ADD COLUMN rss_bytes INTEGER")
    db.execute("ALTER TABLE instances ADD COLUMN sampled_at REAL")


@migration("m005_desired_state")
def _m005_desired_state(db: sqlite3.Connection) -> None:
    # What ocm asks of a keeper (a stop and its timeout; the first start's deadline), what the
    # keeper reports about itself (heartbeat, its own errors, orphans it adopted), who is
    # bringing a `starting` row up, and the marker its server's processes inherit.
    for column in (
        "desired TEXT NOT NULL DEFAULT 'running'",
        "stop_timeout REAL",
        "start_timeout REAL",
        "heartbeat_at REAL",
        "keeper_error TEXT",
        "adopted TEXT",
        "starter_pid INTEGER",
        "starter_ctime REAL",
        "launch_token TEXT",
    ):
        db.execute(f"ALTER TABLE instances ADD COLUMN {column}")
    # A batch is run by one process at a time: its claim, and a cancel request for it.
    db.execute("ALTER TABLE batches ADD COLUMN runner_pid INTEGER")
    db.execute("ALTER TABLE batches ADD COLUMN runner_ctime REAL")
    db.execute("ALTER TABLE batches ADD COLUMN cancel_requested REAL")


_COLUMNS = [
    "name", "spec", "state", "keeper_pid", "keeper_ctime", "server_pid", "server_ctime", "port",
    "url", "version", "restarts", "last_exit", "error", "created_at", "updated_at", "started_at",
    "stopped_at", "cpu_percent", "rss_bytes", "sampled_at", "desired", "stop_timeout",
    "start_timeout", "heartbeat_at", "keeper_error", "adopted", "starter_pid", "starter_ctime",
    "launch_token",
]  # fmt: skip
_UPDATABLE = frozenset(_COLUMNS) - {"name", "created_at"}
_SERVER_GONE = {"server_pid": None, "server_ctime": None}


@migration("m006_sample_history")
def _m006_sample_history(db: sqlite3.Connection) -> None:
    # The keeper's recent samples (bounded: SAMPLE_HISTORY_S), for charts over time.
    db.execute(
        """
        CREATE TABLE samples (
            instance     TEXT NOT NULL,
            at           REAL NOT NULL,
            cpu_percent  REAL,
            rss_bytes    INTEGER
        )
        """
    )
    db.execute("CREATE INDEX samples_by_instance ON samples (instance, at)")


@migration("m007_task_indexes")
def _m007_task_indexes(db: sqlite3.Connection) -> None:
    # At 100,000 records `ocm results` must not sort the table for its newest 50, nor
    # `ocm batch ls` read every record: the newest first by index (also within a status;
    # batches too), and each batch's counts and time span from an index alone (so the start
    # time, until now only inside the record's JSON, gets a column of its own).
    db.execute("ALTER TABLE tasks ADD COLUMN started_at REAL")
    db.execute("UPDATE tasks SET started_at = json_extract(record, '$.started_at')")
    db.execute("CREATE INDEX tasks_by_created ON tasks (created_at)")
    db.execute("DROP INDEX tasks_by_status")
    db.execute("CREATE INDEX tasks_by_status ON tasks (status, created_at)")
    db.execute(
        "CREATE INDEX tasks_by_batch_status ON tasks (batch_id, status, started_at, finished_at)"
    )
    db.execute("CREATE INDEX batches_by_created ON batches (created_at)")


def _identity(pid: Any, ctime: Any, cmd: str | None = None) -> ProcessIdentity | None:
    if pid is None or ctime is None:
        return None
    return ProcessIdentity(int(pid), float(ctime), cmd)


def _adopted(text: str | None) -> tuple[ProcessIdentity, ...]:
    if not text:
        return ()
    try:
        items = json.loads(text)
    except ValueError:
        return ()
    found = (ProcessIdentity.from_json(item) for item in items if isinstance(item, list))
    return tuple(ident for ident in found if ident is not None)


def _record(row: sqlite3.Row) -> InstanceRecord:
    return InstanceRecord(
        name=row["name"],
        spec=InstanceSpec.from_json(row["spec"]),
        state=State(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        keeper=_identity(row["keeper_pid"], row["keeper_ctime"], KEEPER_CMD),
        server=_identity(row["server_pid"], row["server_ctime"], SERVER_CMD),
        port=row["port"],
        url=row["url"],
        version=row["version"],
        restarts=row["restarts"],
        last_exit=row["last_exit"],
        error=row["error"],
        started_at=row["started_at"],
        stopped_at=row["stopped_at"],
        cpu_percent=row["cpu_percent"],
        rss_bytes=row["rss_bytes"],
        sampled_at=row["sampled_at"],
        desired=row["desired"] or "running",
        stop_timeout=row["stop_timeout"],
        start_timeout=row["start_timeout"],
        heartbeat_at=row["heartbeat_at"],
        keeper_error=row["keeper_error"],
        adopted=_adopted(row["adopted"]),
        starter=_identity(row["starter_pid"], row["starter_ctime"]),
        launch_token=row["launch_token"],
    )


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


class Registry:
    """Typed access to the registry database; one connection per thread."""

    def __init__(self, path: Path, *, timeout: float = 15.0) -> None:
        self.path = path
        self.marker = path.with_name(path.name + ".created")
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._writers: list[dbfile.WriterLock] = []  # one per thread, all closed by close()
        self._lock = threading.Lock()
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

    def close(self) -> None:
        with self._lock:
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
        with self._writer_lock().shared(self._timeout), self._transaction() as db:
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

    # -- instances: reading ----------------------------------------------------------------
    def get(self, name: str) -> InstanceRecord:
        record = self.find(name)
        if record is None:
            raise NotFoundError(f"no instance named {name!r}; see `ocm ls`", instance=name)
        return record

    def find(self, name: str) -> InstanceRecord | None:
        rows = self.query("SELECT * FROM instances WHERE name = ?", (name,))
        return _record(rows[0]) if rows else None

    def instances(self) -> list[InstanceRecord]:
        return [_record(r) for r in self.query("SELECT * FROM instances ORDER BY created_at")]

    def names(self, db: sqlite3.Connection) -> set[str]:
        return {row[0] for row in db.execute("SELECT name FROM instances")}

    def claimed_ports(self, db: sqlite3.Connection) -> set[int]:
        """Ports held by instances that are, or may soon be, listening."""
        rows = db.execute(
            "SELECT port FROM instances WHERE port IS NOT NULL AND state IN (?, ?, ?)",
            (State.STARTING.value, State.RUNNING.value, State.STOPPING.value),
        )
        return {int(row[0]) for row in rows}

    # -- instances: transitions made by ocm ------------------------------------------------
    def reserve(
        self,
        db: sqlite3.Connection,
        spec: InstanceSpec,
        *,
        port: int | None,
        starter: ProcessIdentity | None = None,
        start_timeout: float | None = None,
        token: str | None = None,
        version: str | None = None,
    ) -> None:
        """A new `starting` row, claimed by `starter`, inside the caller's transaction.
        `version`: its binary's, which decides the line its keeper speaks."""
        now = time.time()
        try:
            db.execute(
                "INSERT INTO instances (name, spec, state, port, created_at, updated_at,"
                " starter_pid, starter_ctime, start_timeout, launch_token, version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.name,
                    spec.to_json(),
                    State.STARTING.value,
                    port,
                    now,
                    now,
                    starter.pid if starter else None,
                    starter.create_time if starter else None,
                    start_timeout,
                    token,
                    version,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise ConflictError(
                f"an instance named {spec.name!r} already exists; pick another name or "
                f"`ocm rm {spec.name}` it first",
                instance=spec.name,
            ) from exc

    def add_remote(
        self, db: sqlite3.Connection, spec: InstanceSpec, *, url: str, version: str
    ) -> None:
        """A remote instance (`ocm remote add`): running from the start, with no processes."""
        now = time.time()
        try:
            db.execute(
                "INSERT INTO instances (name, spec, state, port, url, version, created_at,"
                " updated_at, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (spec.name, spec.to_json(), State.RUNNING.value, spec.port, url, version,
                 now, now, now),
            )  # fmt: skip
        except sqlite3.IntegrityError as exc:
            raise ConflictError(
                f"an instance named {spec.name!r} already exists; pick another name",
                instance=spec.name,
            ) from exc
        db.execute(
            "INSERT INTO events (instance, time, kind, detail) VALUES (?, ?, ?, ?)",
            (spec.name, now, EventKind.HEALTHY.value, f"{url} (opencode {version}, remote)"),
        )

    def relaunch(
        self,
        db: sqlite3.Connection,
        name: str,
        spec: InstanceSpec,
        *,
        port: int | None,
        restarts: int,
        starter: ProcessIdentity | None,
        start_timeout: float | None,
        token: str,
        version: str | None = None,
    ) -> None:
        """`ocm restart`: the row goes back to `starting` for a new keeper (`version`: its
        binary's, as in `reserve`)."""
        self._set(
            db,
            name,
            spec=spec,
            version=version,
            state=State.STARTING,
            port=port,
            url=None,
            error=None,
            restarts=restarts,
            stopped_at=None,
            desired="running",
            stop_timeout=None,
            start_timeout=start_timeout,
            starter_pid=starter.pid if starter else None,
            starter_ctime=starter.create_time if starter else None,
            keeper_error=None,
            adopted=None,
            launch_token=token,
            **_SERVER_GONE,
        )

    def mark_launched(self, name: str, keeper: ProcessIdentity | None) -> None:
        """The keeper process exists (its PID came back from the detaching launcher)."""
        self.update(
            name,
            keeper_pid=keeper.pid if keeper else None,
            keeper_ctime=keeper.create_time if keeper else None,
        )

    def request_stop(self, name: str, timeout: float) -> InstanceRecord:
        """Desired state: stopped, within `timeout` seconds of SIGTERM. The keeper acts on it."""
        with self.transaction() as db:
            self._set(db, name, desired="stopped", stop_timeout=timeout)
            rows = db.execute("SELECT * FROM instances WHERE name = ?", (name,)).fetchall()
        return _record(rows[0])

    def mark_stopped(self, name: str) -> None:
        """Stopped on request with nothing of it left (keeper and server ids cleared)."""
        with self.transaction() as db:
            fields: dict[str, Any] = {
                "keeper_pid": None,
                "keeper_ctime": None,
                "starter_pid": None,
                "starter_ctime": None,
                "adopted": None,
                **_SERVER_GONE,
            }
            current = db.execute("SELECT state FROM instances WHERE name = ?", (name,)).fetchone()
            if current is not None and current[0] != State.STOPPED.value:
                fields.update(state=State.STOPPED, stopped_at=time.time(), last_exit="stopped")
            self._set(db, name, **fields)

    def mark_crashed(self, name: str, error: str, *, stopped_at: float | None = None) -> None:
        """Found dead, or failed before its keeper could say so."""
        self.update(
            name,
            state=State.CRASHED,
            error=error,
            stopped_at=stopped_at or time.time(),
            keeper_pid=None,
            keeper_ctime=None,
            starter_pid=None,
            starter_ctime=None,
            **_SERVER_GONE,
        )

    def release_start(self, name: str) -> None:
        """The `ocm start` that brought the row up is done with it."""
        self.update(name, starter_pid=None, starter_ctime=None)

    def delete(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM instances WHERE name = ?", (name,))
            db.execute("DELETE FROM events WHERE instance = ?", (name,))
            db.execute("DELETE FROM samples WHERE instance = ?", (name,))

    # -- instances: transitions made by the keeper -----------------------------------------
    def keeper_started(self, name: str, keeper: ProcessIdentity) -> None:
        self.update(
            name,
            keeper_pid=keeper.pid,
            keeper_ctime=keeper.create_time,
            heartbeat_at=time.time(),
            keeper_error=None,
        )

    def server_spawned(self, name: str, server: ProcessIdentity | None) -> None:
        self.update(
            name,
            state=State.STARTING,
            server_pid=server.pid if server else None,
            server_ctime=server.create_time if server else None,
            heartbeat_at=time.time(),
        )

    def mark_running(
        self, name: str, *, url: str, port: int | None, version: str, at: float | None = None
    ) -> None:
        """The server answers: the state and its `healthy` event land in one transaction, so
        no reader sees a running instance whose history does not say so yet."""
        now = time.time()
        with self.transaction() as db:
            self._set(
                db,
                name,
                state=State.RUNNING,
                url=url,
                port=port,
                version=version,
                started_at=now,
                error=None,
                heartbeat_at=now,
                starter_pid=None,
                starter_ctime=None,
            )
            db.execute(
                "INSERT INTO events (instance, time, kind, detail) VALUES (?, ?, ?, ?)",
                (name, at or now, EventKind.HEALTHY.value, f"{url} (opencode {version})"),
            )

    def heartbeat(self, name: str, *, cpu: float | None = None, rss: int | None = None) -> None:
        """The keeper's loop is alive; with the server's CPU and memory when sampled (kept
        in the bounded sample history too)."""
        now = time.time()
        if cpu is None and rss is None:
            self.update(name, heartbeat_at=now)
            return
        with self.transaction() as db:
            self._set(db, name, heartbeat_at=now, cpu_percent=cpu, rss_bytes=rss, sampled_at=now)
            db.execute(
                "INSERT INTO samples (instance, at, cpu_percent, rss_bytes) VALUES (?, ?, ?, ?)",
                (name, now, cpu, rss),
            )
            db.execute(
                "DELETE FROM samples WHERE instance = ? AND at < ?",
                (name, now - SAMPLE_HISTORY_S),
            )

    def samples(self, name: str, *, since: float | None = None) -> list[ResourceSample]:
        """The instance's recent samples, oldest first."""
        rows = self.query(
            "SELECT at, cpu_percent, rss_bytes FROM samples WHERE instance = ? AND at >= ?"
            " ORDER BY at",
            (name, since if since is not None else 0.0),
        )
        return [ResourceSample(r["at"], r["cpu_percent"], r["rss_bytes"]) for r in rows]

    def mark_stopping(self, name: str) -> None:
        self.update(name, state=State.STOPPING, heartbeat_at=time.time())

    def mark_ended(
        self, name: str, state: State, *, error: str | None, last_exit: str | None
    ) -> None:
        """The server is gone for good: stopped, crashed (not restarted) or errored."""
        self.update(
            name,
            state=state,
            error=error,
            last_exit=last_exit,
            stopped_at=time.time(),
            starter_pid=None,
            starter_ctime=None,
            **_SERVER_GONE,
        )

    def mark_restarting(self, name: str, *, last_exit: str, error: str) -> None:
        """The keeper will start the server again after its backoff."""
        with self.transaction() as db:
            row = db.execute("SELECT restarts FROM instances WHERE name = ?", (name,)).fetchone()
            restarts = (row[0] if row else 0) + 1
            self._set(
                db,
                name,
                state=State.STARTING,
                restarts=restarts,
                last_exit=last_exit,
                error=error,
                **_SERVER_GONE,
            )

    def keeper_problem(self, name: str, problem: str | None) -> None:
        self.update(name, keeper_error=problem)

    def keeper_ended(self, name: str) -> None:
        self.update(name, keeper_pid=None, keeper_ctime=None, adopted=None)

    def rejoin(self, name: str, spec: InstanceSpec, *, created_at: float, **fields: Any) -> bool:
        """A keeper's whole row, written again into a registry that was replaced under it
        (`ocm restore` of an older backup): inserted when that file does not have it.
        Returns whether it had to be inserted.

        The keeper is the only one who knows what runs: without this, a live server that no
        registry lists could only be stopped by PID."""
        now = time.time()
        with self.transaction() as db:
            missing = not db.execute("SELECT 1 FROM instances WHERE name = ?", (name,)).fetchall()
            if missing:
                db.execute(
                    "INSERT INTO instances (name, spec, state, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, spec.to_json(), State(fields.get("state", State.STARTING)).value,
                     created_at, now),
                )  # fmt: skip
            self._set(db, name, spec=spec, **fields)
            db.execute(
                "INSERT INTO events (instance, time, kind, detail) VALUES (?, ?, ?, ?)",
                (name, now, EventKind.REJOINED.value,
                 "the registry was replaced; the keeper wrote its state "
                 + ("(its row was missing)" if missing else "back")),
            )  # fmt: skip
        return missing

    def mark_adopted(self, name: str, adopted: list[ProcessIdentity]) -> None:
        """Orphans re-parented to the keeper, so a stop without the keeper still ends them."""
        text = json.dumps([ident.to_json() for ident in adopted]) if adopted else None
        self.update(name, adopted=text)

    # -- the one free-form update, kept private to the transitions above -------------------
    def update(self, name: str, **fields: Any) -> None:
        with self.transaction() as db:
            self._set(db, name, **fields)

    def _set(self, db: sqlite3.Connection, name: str, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"unknown registry columns: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if isinstance(value, State):
                value = value.value
            elif isinstance(value, InstanceSpec):
                value = value.to_json()
            values[key] = value
        values["updated_at"] = time.time()
        assignments = ", ".join(f"{key} = :{key}" for key in values)
        # Column names come from the _UPDATABLE allow-list; values are bound parameters.
        cursor = db.execute(
            f"UPDATE instances SET {assignments} WHERE name = :_name",  # noqa: S608
            {**values, "_name": name},
        )
        if cursor.rowcount == 0:
            raise NotFoundError(f"no instance named {name!r}", instance=name)

    # -- lifecycle events ------------------------------------------------------------------
    def add_event(
        self, name: str, kind: str, detail: str | None = None, *, at: float | None = None
    ) -> None:
        """Record a lifecycle event (started, healthy, restarted, crashed, ...) at the time it
        happened, which may be earlier than now when the write had to wait."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO events (instance, time, kind, detail) VALUES (?, ?, ?, ?)",
                (name, at if at is not None else time.time(), str(kind), detail),
            )

    def events(
        self, name: str | None = None, limit: int | None = None, *, after: int | None = None
    ) -> list[LifecycleEvent]:
        """Events, oldest first (the newest `limit` when given; only ids above `after`)."""
        clauses, params = [], []
        if name:
            clauses.append("instance = ?")
            params.append(name)
        if after is not None:
            clauses.append("id > ?")
            params.append(str(after))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        tail = f" LIMIT {int(limit)}" if limit else ""
        rows = self.query(
            f"SELECT * FROM (SELECT * FROM events {where} ORDER BY id DESC{tail})"  # noqa: S608
            " ORDER BY id",
            tuple(params),
        )
        return [
            LifecycleEvent(r["instance"], r["time"], r["kind"], r["detail"], r["id"]) for r in rows
        ]


def _rollback(db: sqlite3.Connection) -> None:
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        return


#: What each task adds to the running totals (columns of `tasks` and of `task_totals` alike):
#: its tokens, and its cost in billionths of the provider's unit, so that subtracting an old
#: figure and adding a new one is exact however often a record is saved. (What m008 made: a
#: change to them is a new migration.)
USAGE_COLUMNS = (
    "tokens_input", "tokens_output", "tokens_reasoning", "tokens_cache_read",
    "tokens_cache_write", "cost_nanos",
)  # fmt: skip
TOTALS_ALL = "all"  # the `task_totals` period that holds every task ever recorded


@migration("m008_task_totals")
def _m008_task_totals(db: sqlite3.Connection) -> None:
    # `ocm metrics` read every record (SUM(json_extract(...))): 2.2 s at 100,000. Now each
    # task's usage sits in columns of its row (written by the store with the record), and
    # triggers keep running totals by status, over all time ('all') and per UTC day of the
    # task's creation, in the same statement as every insert, update and delete of a task:
    # no write path (prune, `batch rm`, a requeue, whatever comes later) can forget them, and
    # a scrape reads a few rows whatever the history. Per-day rows are one per day and status.
    # As the store's `usage()` takes them: tokens truncated to integers, cost rounded.
    stored = [
        f"COALESCE(json_extract(record, '{path}'), 0)"
        for path in ("$.tokens.input", "$.tokens.output", "$.tokens.reasoning",
                     "$.tokens.cache.read", "$.tokens.cache.write", "$.cost")
    ]  # fmt: skip
    stored[-1] = f"ROUND({stored[-1]} * 1e9)"
    for column in USAGE_COLUMNS:
        db.execute(f"ALTER TABLE tasks ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    back_fill = ", ".join(
        f"{column} = CAST({value} AS INTEGER)"
        for column, value in zip(USAGE_COLUMNS, stored, strict=True)
    )
    db.execute(f"UPDATE tasks SET {back_fill}")  # noqa: S608
    sums = ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in USAGE_COLUMNS)
    db.execute(
        f"""
        CREATE TABLE task_totals (
            period  TEXT NOT NULL,  -- 'all', or a UTC day (YYYY-MM-DD) the tasks were created
            status  TEXT NOT NULL,
            tasks   INTEGER NOT NULL DEFAULT 0,
            {sums},
            PRIMARY KEY (period, status)
        ) WITHOUT ROWID
        """
    )
    columns = ", ".join(USAGE_COLUMNS)
    summed = ", ".join(f"SUM({c})" for c in USAGE_COLUMNS)
    for period in (f"'{TOTALS_ALL}'", "date(created_at, 'unixepoch')"):
        db.execute(
            f"INSERT INTO task_totals (period, status, tasks, {columns})"  # noqa: S608
            f" SELECT {period}, status, COUNT(*), {summed} FROM tasks GROUP BY 1, 2"
        )

    def add(row: str, sign: str) -> str:
        """Statements adding (sign '+') or taking away ('-') one row's contribution."""
        values = ", ".join(f"{sign}{row}.{c}" for c in USAGE_COLUMNS)
        sets = ", ".join(f"{c} = {c} + excluded.{c}" for c in USAGE_COLUMNS)
        return "".join(
            f"INSERT INTO task_totals (period, status, tasks, {columns})"  # noqa: S608
            f" VALUES ({period}, {row}.status, {sign}1, {values})"
            f" ON CONFLICT (period, status) DO UPDATE SET tasks = tasks + excluded.tasks, {sets};"
            for period in (f"'{TOTALS_ALL}'", f"date({row}.created_at, 'unixepoch')")
        )

    on = "AFTER INSERT ON tasks"
    db.execute(f"CREATE TRIGGER task_totals_insert {on} BEGIN {add('NEW', '+')} END")
    on = "AFTER DELETE ON tasks"
    db.execute(f"CREATE TRIGGER task_totals_delete {on} BEGIN {add('OLD', '-')} END")
    # Every save of a running task rewrites its row: the totals move only when these change.
    watched = ("status", "created_at", *USAGE_COLUMNS)
    on = f"AFTER UPDATE OF {', '.join(watched)} ON tasks"
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in watched)
    db.execute(
        f"CREATE TRIGGER task_totals_update {on} WHEN {changed}"
        f" BEGIN {add('OLD', '-')} {add('NEW', '+')} END"
    )
