"""The registry file's connections: `close` never pulls one from under another thread."""

from __future__ import annotations

import threading
from pathlib import Path

from opencode_manager.database import Database

from helpers import wait_for

#: A query that says it began (`began()`), then takes a while: ? rows, read one by one.
_SLOW = (
    "WITH RECURSIVE n(i) AS (SELECT began() UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
    "SELECT i FROM n"
)
_COUNT = 2_000_000


def test_close_waits_for_a_query_another_thread_is_running(tmp_path: Path) -> None:
    """A front's worker thread read the registry while the front shut down and closed it:
    the interpreter crashed (CI, the dashboard's events page). Close waits for the read."""
    database = Database(tmp_path / "registry.db")
    database.query("SELECT 1")  # opened here too: close has a connection of its own to close
    got: list[object] = []
    began = threading.Event()

    def mark() -> int:
        began.set()
        return 1

    def read() -> None:
        database.db.create_function("began", 0, mark)
        try:
            got.append(len(database.query(_SLOW, (_COUNT,))))
        except Exception as exc:
            got.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    wait_for(began.is_set, timeout=10, interval=0.001, message="the query")
    database.close()
    assert got == [_COUNT]  # it finished before its connection was closed
    reader.join(timeout=30)
    database.query("SELECT 1")  # and the registry opens again after a close
    database.close()
