"""Idempotent submission: `--key KEY` names a task, so submitting it again returns that task.

A client that lost the answer to a submission (a dropped connection, a killed script) retries
with the same key and gets the task that the first submission made, in whatever state it is,
instead of running it twice. The key is claimed in one transaction (a unique constraint
decides), before the task is recorded or sent.
"""

from __future__ import annotations

import sqlite3
import time

from ..database import Database
from ..errors import UsageError

MAX_KEY_LENGTH = 200


def validate_key(key: str) -> str:
    """A key is 1-200 printable characters, kept as given."""
    if not key or not key.strip():
        raise UsageError("--key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise UsageError(f"--key is {len(key)} characters long; at most {MAX_KEY_LENGTH}")
    if not key.isprintable():
        raise UsageError("--key must be printable text (no control characters)")
    return key


def claim_key_in(db: sqlite3.Connection, key: str, task_id: str, now: float) -> str:
    """Inside the caller's write transaction: the task id `key` names from now on (`task_id`
    when this claim is the first, else the one claimed before)."""
    db.execute(
        "INSERT INTO submission_keys (key, task_id, created_at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO NOTHING",
        (key, task_id, now),
    )
    row = db.execute("SELECT task_id FROM submission_keys WHERE key = ?", (key,)).fetchone()
    return str(row[0])


def claim_key(registry: Database, key: str, task_id: str) -> str:
    """Claim `key` for `task_id` in one transaction; the task id it names (an existing one
    when the key was claimed before: the caller returns that task instead of running)."""
    validate_key(key)
    with registry.transaction() as db:
        return claim_key_in(db, key, task_id, time.time())


def task_for_key(registry: Database, key: str) -> str | None:
    rows = registry.query("SELECT task_id FROM submission_keys WHERE key = ?", (key,))
    return str(rows[0][0]) if rows else None


def forget_keys(registry: Database, task_ids: list[str]) -> int:
    """Drop the keys of tasks that are deleted (`ocm results prune`, `batch rm`): a key
    whose task is gone would name nothing."""
    if not task_ids:
        return 0
    with registry.transaction() as db:
        marks = ", ".join("?" for _ in task_ids)
        cursor = db.execute(
            f"DELETE FROM submission_keys WHERE task_id IN ({marks})",  # noqa: S608
            tuple(task_ids),
        )
        return cursor.rowcount
