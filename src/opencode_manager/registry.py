"""The instance state machine: the `instances` table's rows as `InstanceRecord`s, and every
change to them as a named transition (`reserve`, `mark_running`, `request_stop`, ...), with
the lifecycle events and resource samples that go with them.

The row holds the observed state (what the keeper saw) and the desired state (what ocm asked
for: a stop, with its timeout), which the keeper's reconcile loop acts on. Each transition
says when it applies and writes its columns in one transaction; the one free-form write,
`_update`, is private to them (tests/test_layout.py checks that nothing else calls it). The
database under it (connections, transactions, backups, migrations) is database.py's.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sqlite3
import time
from typing import Any

from .database import Database
from .errors import ConflictError, NotFoundError, OcmError
from .models import (
    KEEPER_CMD,
    SERVER_CMD,
    DesiredState,
    EventKind,
    InstanceRecord,
    InstanceSpec,
    LifecycleEvent,
    ProcessIdentity,
    ResourceSample,
    State,
)
from .settings import Settings

SAMPLE_HISTORY_S = 1800.0  # the keeper's samples kept per instance (30 minutes)
#: The `instances` table's columns (what migrations.py made of it).
_COLUMNS = [
    "name", "spec", "state", "keeper_pid", "keeper_ctime", "server_pid", "server_ctime", "port",
    "url", "version", "restarts", "last_exit", "error", "created_at", "updated_at", "started_at",
    "stopped_at", "cpu_percent", "rss_bytes", "sampled_at", "desired", "stop_timeout",
    "start_timeout", "heartbeat_at", "keeper_error", "adopted", "starter_pid", "starter_ctime",
    "launch_token",
]  # fmt: skip
_UPDATABLE = frozenset(_COLUMNS) - {"name", "created_at"}
_SERVER_GONE = {"server_pid": None, "server_ctime": None}


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
        desired=DesiredState(row["desired"] or DesiredState.RUNNING),
        stop_timeout=row["stop_timeout"],
        start_timeout=row["start_timeout"],
        heartbeat_at=row["heartbeat_at"],
        keeper_error=row["keeper_error"],
        adopted=_adopted(row["adopted"]),
        starter=_identity(row["starter_pid"], row["starter_ctime"]),
        launch_token=row["launch_token"],
    )


def open_registry(settings: Settings, *, backups: bool = True) -> Registry:
    """The registry of `settings`' OCM_HOME, as every command opens it: the home made if
    missing, and today's backup taken if not yet (a failed one, a full disk say, must not stop
    the command; `ocm doctor` shows it). The facade's fleet and the CLI's reads both open it
    here, so a read that skips the facade changes nothing of what opening it does."""
    settings.ensure_home()
    registry = Registry(settings.registry_path, timeout=settings.registry_timeout)
    if backups:
        with contextlib.suppress(OcmError):
            registry.backup_daily()
    return registry


class Registry(Database):
    """The registry database with its instances: what ocm and the keepers read and the named
    transitions they make."""

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
                f"an instance named {spec.name!r} already exists: `ocm restart {spec.name}` "
                f"starts it again with its settings; or pick another name, or `ocm rm "
                f"{spec.name}` to forget it",
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
            desired=DesiredState.RUNNING,
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
        self._update(
            name,
            keeper_pid=keeper.pid if keeper else None,
            keeper_ctime=keeper.create_time if keeper else None,
        )

    def request_stop(self, name: str, timeout: float) -> InstanceRecord:
        """Desired state: stopped, within `timeout` seconds of SIGTERM. The keeper acts on it."""
        with self.transaction() as db:
            self._set(db, name, desired=DesiredState.STOPPED, stop_timeout=timeout)
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
        self._update(
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
        self._update(name, starter_pid=None, starter_ctime=None)

    def set_spec(self, name: str, spec: InstanceSpec) -> None:
        """A new spec, nothing else changed: for what applies without a restart (a fleet
        file's task defaults, `ocm up`) or at the next one (`ocm resurrect` putting back the
        automatic port setting it pinned for one start). A spec that changes the server goes
        through `relaunch` instead."""
        if spec.name != name:
            raise ValueError(f"a spec named {spec.name!r} for instance {name!r}")
        self._update(name, spec=spec)

    def delete(self, name: str) -> None:
        """`ocm rm` (or a start undone): the row goes, with its events and samples."""
        with self.transaction() as db:
            db.execute("DELETE FROM instances WHERE name = ?", (name,))
            db.execute("DELETE FROM events WHERE instance = ?", (name,))
            db.execute("DELETE FROM samples WHERE instance = ?", (name,))

    # -- instances: transitions made by the cluster driver (cluster/link.py) ---------------
    def mark_running_on_host(
        self,
        name: str,
        *,
        url: str,
        port: int | None,
        version: str | None = None,
        spec: InstanceSpec | None = None,
    ) -> None:
        """A cluster instance its host agent says is running, after a start or a restart
        there (the agent's keeper writes the host's own registry; this is the driver's row).

        The row is running at `url`, without an error, a stop time or an `ocm start` holding
        it; `version` and `spec`, when given, replace the row's (what the agent found at a
        start). A row that was `starting` (or never ran) gets its start time, and its
        `healthy` event in the same transaction, as `mark_running` does."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute(
                "SELECT state, started_at FROM instances WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no instance named {name!r}", instance=name)
            first = row["state"] == State.STARTING.value
            fields: dict[str, Any] = {
                "state": State.RUNNING,
                "url": url,
                "port": port,
                "error": None,
                "stopped_at": None,
                "starter_pid": None,
                "starter_ctime": None,
            }
            if version is not None:
                fields["version"] = version
            if spec is not None:
                fields["spec"] = spec
            if first or row["started_at"] is None:
                fields["started_at"] = now
            self._set(db, name, **fields)
            if first:
                db.execute(
                    "INSERT INTO events (instance, time, kind, detail) VALUES (?, ?, ?, ?)",
                    (name, now, EventKind.HEALTHY.value, f"{url} (cluster)"),
                )

    def mark_start_in_doubt(self, name: str, error: str) -> None:
        """A failed cluster start whose undo its host did not confirm: the row stays as it
        is (`starting`), saying why, for `ocm cluster up` to settle with what runs there."""
        self._update(name, error=error)

    # -- instances: transitions made by the keeper -----------------------------------------
    def keeper_started(self, name: str, keeper: ProcessIdentity) -> None:
        """The keeper is up and supervising (its own PID, the first heartbeat)."""
        self._update(
            name,
            keeper_pid=keeper.pid,
            keeper_ctime=keeper.create_time,
            heartbeat_at=time.time(),
            keeper_error=None,
        )

    def server_spawned(self, name: str, server: ProcessIdentity | None) -> None:
        """A server process was spawned (first start or restart): starting until healthy."""
        self._update(
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
            self._update(name, heartbeat_at=now)
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
        """The keeper took a stop request (or a recycle) and is ending the server."""
        self._update(name, state=State.STOPPING, heartbeat_at=time.time())

    def mark_ended(
        self, name: str, state: State, *, error: str | None, last_exit: str | None
    ) -> None:
        """The server is gone for good: stopped, crashed (not restarted) or errored."""
        self._update(
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
        """What troubles the keeper (the registry, the disk), or None once it is over."""
        self._update(name, keeper_error=problem)

    def keeper_ended(self, name: str) -> None:
        """The keeper exits (its server is gone): nothing of it is left to signal."""
        self._update(name, keeper_pid=None, keeper_ctime=None, adopted=None)

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
        self._update(name, adopted=text)

    # -- the one free-form update, kept private to the transitions above -------------------
    def _update(self, name: str, **fields: Any) -> None:
        with self.transaction() as db:
            self._set(db, name, **fields)

    def _set(self, db: sqlite3.Connection, name: str, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"unknown registry columns: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if isinstance(value, enum.Enum):  # State, DesiredState
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
