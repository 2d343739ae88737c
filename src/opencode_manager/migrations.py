"""The registry's schema: named migration functions, applied in order and each recorded once
in ``_migrations`` by its function's name (as simonw/llm does).

The names are recorded in every user's database, so a migration is never renamed, reordered or
changed once released: a schema change is a new function at the end. The tables of both sides
live here, in the one order they were made: the instances' (``instances``, ``events``,
``samples``: registry.py) and the tasks' (``tasks``, ``batches``, ``task_totals``:
tasks/store.py). database.py applies them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]
#: Every migration in the order it is applied (its name is its function's).
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration, recorded under its function's name."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_instances(db: sqlite3.Connection) -> None:
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


@migration
def m002_tasks_and_batches(db: sqlite3.Connection) -> None:
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


@migration
def m003_events(db: sqlite3.Connection) -> None:
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


@migration
def m004_samples(db: sqlite3.Connection) -> None:
    # Figures the keeper samples every health interval, so `ocm ls` need not wait to measure.
    db.execute("ALTER TABLE instances ADD COLUMN cpu_percent REAL")
    db.execute("ALTER TABLE instances ADD COLUMN rss_bytes INTEGER")
    db.execute("ALTER TABLE instances ADD COLUMN sampled_at REAL")


@migration
def m005_desired_state(db: sqlite3.Connection) -> None:
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


@migration
def m006_sample_history(db: sqlite3.Connection) -> None:
    # The keeper's recent samples (bounded: registry.SAMPLE_HISTORY_S), for charts over time.
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


@migration
def m007_task_indexes(db: sqlite3.Connection) -> None:
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


#: What each task adds to the running totals (columns of `tasks` and of `task_totals` alike):
#: its tokens, and its cost in billionths of the provider's unit, so that subtracting an old
#: figure and adding a new one is exact however often a record is saved. (What m008 made: a
#: change to them is a new migration.)
USAGE_COLUMNS = (
    "tokens_input", "tokens_output", "tokens_reasoning", "tokens_cache_read",
    "tokens_cache_write", "cost_nanos",
)  # fmt: skip
TOTALS_ALL = "all"  # the `task_totals` period that holds every task ever recorded


@migration
def m008_task_totals(db: sqlite3.Connection) -> None:
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


@migration
def m009_provider_control(db: sqlite3.Connection) -> None:
    # Fleet-wide control of provider traffic (limits/): the limits, the slots in force as
    # leases (owner = PID + start time; a lease whose holder stops renewing it expires), the
    # queue of waiters in submission order, the grants of the last minute (rpm), one circuit
    # breaker per provider, and idempotent submission keys. Read and written by limits/.
    db.execute(
        """
        CREATE TABLE limits (
            scope        TEXT PRIMARY KEY,  -- 'provider' or 'provider/model'
            provider     TEXT NOT NULL,
            model        TEXT,              -- NULL: every model of the provider
            concurrency  INTEGER,
            rpm          INTEGER,
            source       TEXT,              -- 'cli', or the fleet file's project
            updated_at   REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE leases (
            id          TEXT PRIMARY KEY,
            provider    TEXT NOT NULL,
            model       TEXT,
            owner       TEXT NOT NULL,     -- what holds it (a task id)
            pid         INTEGER NOT NULL,  -- the holding process, by identity
            ctime       REAL NOT NULL,
            priority    INTEGER NOT NULL DEFAULT 0,
            probe       INTEGER NOT NULL DEFAULT 0,  -- a half-open breaker's trial turn
            granted_at  REAL NOT NULL,
            expires_at  REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX leases_by_provider ON leases (provider, model)")
    db.execute(
        """
        CREATE TABLE waiters (
            seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order
            id           TEXT NOT NULL UNIQUE,
            provider     TEXT NOT NULL,
            model        TEXT,
            owner        TEXT NOT NULL,
            pid          INTEGER NOT NULL,
            ctime        REAL NOT NULL,
            priority     INTEGER NOT NULL DEFAULT 0,
            enqueued_at  REAL NOT NULL,
            seen_at      REAL NOT NULL  -- its last poll: a waiter that stops polling leaves
        )
        """
    )
    db.execute("CREATE INDEX waiters_by_provider ON waiters (provider)")
    db.execute("CREATE TABLE grants (provider TEXT NOT NULL, model TEXT, at REAL NOT NULL)")
    db.execute("CREATE INDEX grants_by_provider ON grants (provider, at)")
    db.execute(
        """
        CREATE TABLE breakers (
            provider    TEXT PRIMARY KEY,
            state       TEXT NOT NULL,
            failures    TEXT NOT NULL DEFAULT '[]',  -- JSON: times of recent failures
            until       REAL,
            trips       INTEGER NOT NULL DEFAULT 0,
            reason      TEXT,
            updated_at  REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE submission_keys (
            key         TEXT PRIMARY KEY,
            task_id     TEXT NOT NULL,
            created_at  REAL NOT NULL
        )
        """
    )


@migration
def m010_tasks_with_worktrees(db: sqlite3.Connection) -> None:
    # `ocm worktrees` lists the tasks that ran in a worktree: without an index it reads every
    # record's JSON (18 ms at 10,000 records, growing with history) to find the few that did.
    # A partial index holds just those (SQLite uses it for the query's exact WHERE term).
    db.execute(
        "CREATE INDEX tasks_with_worktree ON tasks (created_at)"
        " WHERE json_extract(record, '$.worktree') IS NOT NULL"
    )
