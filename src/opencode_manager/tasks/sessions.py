"""Sessions across the fleet: list, find, inspect, abort, remove; raw API calls; attach."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .. import process
from ..client import AsyncOpencodeClient, Endpoint, OpencodeClient, http_options
from ..client import operations as ops
from ..client.types import Message, Session
from ..errors import ConflictError, NotFoundError, ServerError, UsageError
from ..models import DEFAULT_USERNAME, InstanceRecord, State
from .dispatch import Fleet

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass
class SessionRow:
    instance: str
    session: Session
    status: str  # idle, busy, retry

    def to_dict(self) -> dict[str, Any]:
        raw = dict(self.session.raw)
        return {
            "instance": self.instance,
            "id": self.session.id,
            "title": self.session.title,
            "status": self.status,
            "directory": self.session.directory,
            "parent_id": self.session.parent_id,
            "created": self.session.created / 1000.0 if self.session.created else None,
            "updated": self.session.updated / 1000.0 if self.session.updated else None,
            "raw": raw,
        }


def _live(fleet: Fleet, ref: str | None) -> list[InstanceRecord]:
    if ref is not None:
        record = fleet.resolve(ref)
        if record.state is not State.RUNNING or not process.is_alive(record.server):
            raise ConflictError(f"{record.name} is not running", instance=record.name)
        return [record]
    return [
        r
        for r in fleet.records()
        if r.state is State.RUNNING and r.url and process.is_alive(r.server)
    ]


def _endpoint(fleet: Fleet, record: InstanceRecord) -> Endpoint:
    endpoint = fleet.endpoint(record)
    if endpoint is None:
        raise ConflictError(f"{record.name} has no URL yet", instance=record.name)
    return endpoint


def list_sessions(fleet: Fleet, ref: str | None = None) -> list[SessionRow]:
    """Sessions of each running instance's project directory, newest last."""
    records = _live(fleet, ref)

    async def gather() -> list[SessionRow]:
        async with httpx.AsyncClient(**http_options()) as http:

            async def one(record: InstanceRecord) -> list[SessionRow]:
                client = AsyncOpencodeClient(_endpoint(fleet, record), http=http)
                try:
                    found = await client.sessions(record.spec.dir)
                    busy = await client.session_status(record.spec.dir)
                except ServerError:
                    return []
                return [SessionRow(record.name, s, _state(busy.get(s.id))) for s in found]

            groups = await asyncio.gather(*(one(r) for r in records))
        return [row for group in groups for row in group]

    rows = asyncio.run(gather())
    return sorted(rows, key=lambda row: (row.session.updated, row.instance))


def _state(status: Any) -> str:
    if isinstance(status, dict) and isinstance(status.get("type"), str):
        return str(status["type"])
    return "idle"


def find_session(
    fleet: Fleet, session_id: str, ref: str | None = None
) -> tuple[InstanceRecord, Session]:
    """Which instance holds this session (every running one is asked when ref is None)."""
    if not session_id.startswith("ses"):
        raise UsageError(f"invalid session id {session_id!r}: session ids start with ses_")
    for record in _live(fleet, ref):
        with OpencodeClient(_endpoint(fleet, record), timeout=5.0) as client:
            try:
                return record, client.session(session_id)
            except ServerError as exc:
                if exc.status_code in (404, 500):
                    continue
                raise
    where = ref if ref else "any running instance"
    raise NotFoundError(f"no session {session_id} on {where}; see `ocm sessions`")


def session_messages(fleet: Fleet, session_id: str, ref: str | None = None) -> list[Message]:
    record, _ = find_session(fleet, session_id, ref)
    with OpencodeClient(_endpoint(fleet, record), timeout=30.0) as client:
        return client.messages(session_id)


def session_todo(fleet: Fleet, session_id: str, ref: str | None = None) -> list[Any]:
    record, _ = find_session(fleet, session_id, ref)
    with OpencodeClient(_endpoint(fleet, record)) as client:
        return client.todo(session_id)


def session_diff(fleet: Fleet, session_id: str, ref: str | None = None) -> list[dict[str, Any]]:
    """File changes per turn (OpenCode's session-wide diff is always empty)."""
    record, _ = find_session(fleet, session_id, ref)
    out: list[dict[str, Any]] = []
    with OpencodeClient(_endpoint(fleet, record), timeout=30.0) as client:
        for message in client.messages(session_id):
            if message.role != "user":
                continue
            for change in client.diff(session_id, message.id):
                if isinstance(change, dict):
                    out.append({"message_id": message.id, **change})
    return out


def abort_session(fleet: Fleet, session_id: str, ref: str | None = None) -> str:
    record, session = find_session(fleet, session_id, ref)
    with OpencodeClient(_endpoint(fleet, record)) as client:
        client.abort(session_id)
        _wait_idle(client, session)
    return record.name


def remove_session(fleet: Fleet, session_id: str, ref: str | None = None) -> str:
    """Abort (deleting a busy session does not stop it), then delete."""
    record, session = find_session(fleet, session_id, ref)
    with OpencodeClient(_endpoint(fleet, record)) as client:
        client.abort(session_id)
        _wait_idle(client, session)
        client.delete_session(session_id)
    return record.name


def _wait_idle(client: OpencodeClient, session: Session, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if session.id not in client.session_status(session.directory):
            return
        time.sleep(0.1)  # polling for idle with a deadline


def api(
    fleet: Fleet,
    ref: str,
    method: str,
    path: str,
    data: str | None = None,
    directory: str | None = None,
) -> Any:
    """Any API call, authenticated; JSON in and out."""
    import json

    method = method.upper()
    if method not in _METHODS:
        raise UsageError(f"invalid method {method!r}: use one of {', '.join(_METHODS)}")
    body: Any = None
    if data is not None:
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise UsageError(f"invalid --data: not JSON ({exc.args[0]})") from None
    record = fleet.resolve(ref)
    with OpencodeClient(_endpoint(fleet, record), timeout=60.0) as client:
        return client.call(ops.raw(method, path, body=body, directory=directory))


def attach_command(
    fleet: Fleet,
    ref: str,
    opencode: str,
    *,
    session_id: str | None = None,
    directory: str | None = None,
    password: str | None,
) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment for `opencode attach` (credentials never in argv)."""
    record = fleet.resolve(ref)
    if record.state is not State.RUNNING or not record.url:
        raise ConflictError(f"{record.name} is not running", instance=record.name)
    argv = [opencode, "attach", record.url]
    if session_id:
        argv += ["--session", session_id]
    if directory:
        argv += ["--dir", directory]
    env = {"OPENCODE_SERVER_USERNAME": DEFAULT_USERNAME}
    if password:
        env["OPENCODE_SERVER_PASSWORD"] = password
    return argv, env
