"""The registry: SQLite under $OCM_HOME, the source of truth for what we own.

Many processes use it at once (CLI invocations, one keeper per instance), so: WAL mode, short
transactions, ``BEGIN IMMEDIATE`` for every read-modify-write (SQLite's write lock is our
cross-process mutex), and a busy timeout. Schema changes are named migration functions, each
recorded once in ``_migrations``. A file that is not a database is reported, never overwritten.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ConflictError, NotFoundError, StateError
from .models import InstanceRecord, InstanceSpec, ProcessIdentity, State

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


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


_COLUMNS = [
    "name",
    "spec",
    "state",
    "keeper_pid",
    "keeper_ctime",
    "server_pid",
    "server_ctime",
    "port",
    "url",
    "version",
    "restarts",
    "last_exit",
    "error",
    "created_at",
    "updated_at",
    "started_at",
    "stopped_at",
    "cpu_percent",
    "rss_bytes",
    "sampled_at",
]
_UPDATABLE = frozenset(_COLUMNS) - {"name", "created_at"}


def _record(row: sqlite3.Row) -> InstanceRecord:
    keeper = (
        ProcessIdentity(row["keeper_pid"], row["keeper_ctime"])
        if row["keeper_pid"] is not None and row["keeper_ctime"] is not None
        else None
    )
    server = (
        ProcessIdentity(row["server_pid"], row["server_ctime"])
        if row["server_pid"] is not None and row["server_ctime"] is not None
        else None
    )
    return InstanceRecord(
        name=row["name"],
        spec=InstanceSpec.from_json(row["spec"]),
        state=State(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        keeper=keeper,
        server=server,
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
    )


class Registry:
    """Typed access to the registry database. One connection per process (not thread-safe)."""

    def __init__(self, path: Path, *, timeout: float = 15.0) -> None:
        self.path = path
        self._timeout = timeout
        self._db: sqlite3.Connection | None = None

    # -- connection ------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
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
            self._migrate(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise self._explain(exc) from exc
        return db

    def _explain(self, exc: sqlite3.Error) -> StateError:
        text = str(exc)
        if "not a database" in text or "malformed" in text or "file is encrypted" in text:
            return StateError(
                f"registry {self.path} is corrupt ({text}); it was left untouched: move it "
                "aside (or restore a backup) and run the command again"
            )
        if "locked" in text or "busy" in text:
            return StateError(f"registry {self.path} is locked by another process; try again")
        if "readonly" in text or "unable to open" in text:
            return StateError(f"registry {self.path} is not writable ({text})")
        return StateError(f"registry {self.path}: {text}")

    def _migrate(self, db: sqlite3.Connection) -> None:
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
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's lock: the cross-process mutex."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            return list(self.db.execute(sql, params))
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc

    # -- instances -------------------------------------------------------------------------
    def applied_migrations(self) -> list[str]:
        return [row[0] for row in self.query("SELECT name FROM _migrations ORDER BY name")]

    def get(self, name: str) -> InstanceRecord:
        rows = self.query("SELECT * FROM instances WHERE name = ?", (name,))
        if not rows:
            raise NotFoundError(f"no instance named {name!r}; see `ocm ls`", instance=name)
        return _record(rows[0])

    def find(self, name: str) -> InstanceRecord | None:
        rows = self.query("SELECT * FROM instances WHERE name = ?", (name,))
        return _record(rows[0]) if rows else None

    def instances(self) -> list[InstanceRecord]:
        return [_record(r) for r in self.query("SELECT * FROM instances ORDER BY created_at")]

    def names(self, db: sqlite3.Connection) -> set[str]:
        return {row[0] for row in db.execute("SELECT name FROM instances")}

    def insert(self, db: sqlite3.Connection, spec: InstanceSpec, *, port: int | None) -> None:
        """Insert a new `starting` row inside the caller's transaction."""
        now = time.time()
        try:
            db.execute(
                "INSERT INTO instances (name, spec, state, port, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (spec.name, spec.to_json(), State.STARTING.value, port, now, now),
            )
        except sqlite3.IntegrityError as exc:
            raise ConflictError(
                f"an instance named {spec.name!r} already exists; pick another name or "
                f"`ocm rm {spec.name}` it first",
                instance=spec.name,
            ) from exc

    def claimed_ports(self, db: sqlite3.Connection) -> set[int]:
        """Ports held by instances that are, or may soon be, listening."""
        rows = db.execute(
            "SELECT port FROM instances WHERE port IS NOT NULL AND state IN (?, ?, ?)",
            (State.STARTING.value, State.RUNNING.value, State.STOPPING.value),
        )
        return {int(row[0]) for row in rows}

    def update(self, name: str, **fields: Any) -> None:
        """Set columns of one row (its own short transaction)."""
        with self.transaction() as db:
            self.update_in(db, name, **fields)

    def update_in(self, db: sqlite3.Connection, name: str, **fields: Any) -> None:
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

    def delete(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM instances WHERE name = ?", (name,))
            db.execute("DELETE FROM events WHERE instance = ?", (name,))

    # -- lifecycle events ------------------------------------------------------------------
    def add_event(self, name: str, kind: str, detail: str | None = None) -> None:
        """Record a lifecycle event: started, healthy, unhealthy, restarted, crashed, ..."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO events (instance, time, kind, detail) VALUES (?, ?, ?, ?)",
                (name, time.time(), kind, detail),
            )

    def events(self, name: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Events, oldest first (the newest `limit` when given)."""
        where, params = ("WHERE instance = ?", (name,)) if name else ("", ())
        tail = f" LIMIT {int(limit)}" if limit else ""
        rows = self.query(
            f"SELECT * FROM (SELECT * FROM events {where} ORDER BY id DESC{tail})"  # noqa: S608
            " ORDER BY id",
            params,
        )
        return [
            {"instance": r["instance"], "time": r["time"], "kind": r["kind"], "detail": r["detail"]}
            for r in rows
        ]
