"""The keeper's own copy of its registry row, folded from the transitions it queues (pure).

The registry is where a keeper reports, but it may lose what was written there: `ocm restore`
swaps in a backup made before this instance started, or before its last restarts. The keeper
then writes its whole row again (`Registry.rejoin`), and this copy is what it writes: every
transition it hands the ledger is folded here first, so the copy is as new as the keeper's
knowledge, whether or not the registry took the write yet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..models import InstanceRecord, ProcessIdentity, State

#: The columns a keeper owns (what `rejoin` writes; the rest is ocm's: spec, desired, ...).
OWNED = (
    "state", "url", "port", "version", "restarts", "last_exit", "error", "started_at",
    "stopped_at", "server_pid", "server_ctime", "keeper_pid", "keeper_ctime", "adopted",
    "keeper_error",
)  # fmt: skip
_SERVER_GONE = {"server_pid": None, "server_ctime": None}


def initial(record: InstanceRecord) -> dict[str, Any]:
    """What the row held when the keeper loaded it."""
    return {
        "state": record.state,
        "url": record.url,
        "port": record.port,
        "version": record.version,
        "restarts": record.restarts,
        "last_exit": record.last_exit,
        "error": record.error,
        "started_at": record.started_at,
        "stopped_at": record.stopped_at,
        **_SERVER_GONE,
        "keeper_pid": None,
        "keeper_ctime": None,
        "adopted": None,
        "keeper_error": None,
    }


def fold(
    row: dict[str, Any], transition: str, args: Sequence[Any], kwargs: dict[str, Any], now: float
) -> None:
    """Apply one queued registry transition (a `Registry` method's name and its arguments,
    the instance's name first) to the copy, as the registry would."""
    rest = list(args[1:])
    if transition == "keeper_started":
        ident: ProcessIdentity = rest[0]
        row.update(keeper_pid=ident.pid, keeper_ctime=ident.create_time, keeper_error=None)
    elif transition == "server_spawned":
        server: ProcessIdentity | None = rest[0]
        row.update(
            state=State.STARTING,
            server_pid=server.pid if server else None,
            server_ctime=server.create_time if server else None,
        )
    elif transition == "mark_running":
        row.update(
            state=State.RUNNING,
            url=kwargs["url"],
            port=kwargs["port"],
            version=kwargs["version"],
            started_at=now,
            error=None,
        )
    elif transition == "mark_stopping":
        row.update(state=State.STOPPING)
    elif transition == "mark_ended":
        row.update(
            state=rest[0],
            error=kwargs.get("error"),
            last_exit=kwargs.get("last_exit"),
            stopped_at=now,
            **_SERVER_GONE,
        )
    elif transition == "mark_restarting":
        row.update(
            state=State.STARTING,
            restarts=int(row.get("restarts") or 0) + 1,
            last_exit=kwargs["last_exit"],
            error=kwargs["error"],
            **_SERVER_GONE,
        )
    elif transition == "keeper_problem":
        row.update(keeper_error=rest[0])
    elif transition == "keeper_ended":
        row.update(keeper_pid=None, keeper_ctime=None, adopted=None)
    elif transition == "mark_adopted":
        adopted: list[ProcessIdentity] = rest[0]
        row.update(adopted=json.dumps([i.to_json() for i in adopted]) if adopted else None)
