"""Sessions across the fleet: list, find, inspect, abort, remove; raw API calls; attach.

What these read from a server is returned without any secret ocm holds (an agent may have
printed an instance's password or a front's token: they are the same user's files), so no
front shows one: `ocm session messages`, `ocm api`, the dashboard, the MCP session tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from ..client import AsyncOpencodeClient, Endpoint
from ..client import operations as ops
from ..client.types import Message, Session
from ..errors import (
    ConflictError,
    NotFoundError,
    OcmError,
    ServerError,
    ServerRefused,
    SessionNotFound,
    UsageError,
)
from ..instances.discovery import ForeignServer
from ..instances.fleet import Fleet
from ..lines import Line
from ..models import InstanceRecord
from ..redaction import redact_data
from .store import TaskStore
from .tracker import Ask, answer_of

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass
class SessionRow:
    """A session and where it lives."""

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
            "created_at": self.session.created / 1000.0 if self.session.created else None,
            "updated_at": self.session.updated / 1000.0 if self.session.updated else None,
            # the names before `*_at`, kept for one release
            "created": self.session.created / 1000.0 if self.session.created else None,
            "updated": self.session.updated / 1000.0 if self.session.updated else None,
            "raw": raw,
        }


async def _live(fleet: Fleet, ref: str | None) -> list[InstanceRecord]:
    if ref is not None:
        return [await asyncio.to_thread(fleet.resolve_running, ref)]
    return await asyncio.to_thread(fleet.running)


async def list_sessions(fleet: Fleet, ref: str | None = None) -> list[SessionRow]:
    """Sessions of each running instance's project directory, newest last. A foreign
    server named by `ref` is read too (its own project; a password it wants is refused)."""
    places: list[tuple[str, Endpoint, str | None]]
    found = await asyncio.to_thread(fleet.find, ref) if ref is not None else None
    foreign = isinstance(found, ForeignServer)
    if isinstance(found, ForeignServer):
        endpoint = await asyncio.to_thread(fleet.reader, ref or "")
        places = [(endpoint.name or found.url, endpoint, None)]
    else:
        places = [(r.name, fleet.endpoint_of(r), r.spec.dir) for r in await _live(fleet, ref)]

    async def one(name: str, endpoint: Endpoint, directory: str | None) -> list[SessionRow]:
        client = fleet.client(endpoint)
        try:
            listed, busy = await asyncio.gather(
                client.sessions(directory), client.session_status(directory)
            )
        except ServerError:
            if foreign:
                raise  # the one server asked for: say why it did not answer
            return []
        return [SessionRow(name, _session(s, endpoint), _state(busy.get(s.id))) for s in listed]

    groups = await asyncio.gather(*(one(*place) for place in places))
    rows = [row for group in groups for row in group]
    return sorted(rows, key=lambda row: (row.session.updated, row.instance))


def _state(status: Any) -> str:
    if isinstance(status, dict) and isinstance(status.get("type"), str):
        return str(status["type"])
    return "idle"


def _session(session: Session, endpoint: Endpoint) -> Session:
    """A session as shown: its title is made from the prompt and may hold a secret."""
    return Session.from_json(redact_data(session.raw, endpoint.secrets()))


def _messages(messages: list[Message], endpoint: Endpoint) -> list[Message]:
    secrets = endpoint.secrets()
    return [Message.from_json(redact_data(m.raw, secrets)) for m in messages]


async def _locate(fleet: Fleet, session_id: str, ref: str | None) -> tuple[InstanceRecord, Session]:
    if not session_id.startswith("ses"):
        raise UsageError(f"invalid session id {session_id!r}: session ids start with ses_")
    for record in await _live(fleet, ref):
        client = fleet.client(record, timeout=5.0)
        try:
            return record, await client.session(session_id)
        except SessionNotFound:
            continue
    where = ref if ref else "any running instance"
    raise NotFoundError(f"no session {session_id} on {where}; see `ocm sessions`")


async def find_session(fleet: Fleet, session_id: str, ref: str | None = None) -> SessionRow:
    """Which instance holds this session (every running one is asked when ref is None)."""
    record, session = await _locate(fleet, session_id, ref)
    endpoint = fleet.endpoint_of(record)
    client = fleet.client(endpoint, timeout=5.0)
    busy = await client.session_status(session.directory or record.spec.dir)
    return SessionRow(record.name, _session(session, endpoint), _state(busy.get(session.id)))


async def session_messages(fleet: Fleet, session_id: str, ref: str | None = None) -> list[Message]:
    record, _ = await _locate(fleet, session_id, ref)
    endpoint = fleet.endpoint_of(record)
    client = fleet.client(endpoint, timeout=30.0)
    return _messages(await client.messages(session_id), endpoint)


async def session_todo(fleet: Fleet, session_id: str, ref: str | None = None) -> list[Any]:
    record, _ = await _locate(fleet, session_id, ref)
    endpoint = fleet.endpoint_of(record)
    client = fleet.client(endpoint)
    todos: list[Any] = redact_data(await client.todo(session_id), endpoint.secrets())
    return todos


async def session_diff(
    fleet: Fleet, session_id: str, ref: str | None = None
) -> list[dict[str, Any]]:
    """File changes per turn (OpenCode's session-wide diff is always empty)."""
    record, _ = await _locate(fleet, session_id, ref)
    endpoint = fleet.endpoint_of(record)
    out: list[dict[str, Any]] = []
    client = fleet.client(endpoint, timeout=30.0)
    for message in await client.messages(session_id):
        if message.role != "user":
            continue
        for change in await client.diff(session_id, message.id):
            if isinstance(change, dict):
                out.append({"message_id": message.id, **change})
    redacted: list[dict[str, Any]] = redact_data(out, endpoint.secrets())
    return redacted


async def abort_session(fleet: Fleet, session_id: str, ref: str | None = None) -> str:
    record, session = await _locate(fleet, session_id, ref)
    client = fleet.client(record)
    await client.abort(session_id)
    await _wait_idle(client, session)
    return record.name


async def remove_session(fleet: Fleet, session_id: str, ref: str | None = None) -> str:
    """Abort (deleting a busy session does not stop it), then delete."""
    record, session = await _locate(fleet, session_id, ref)
    client = fleet.client(record)
    await client.abort(session_id)
    await _wait_idle(client, session)
    await client.delete_session(session_id)
    return record.name


@dataclass
class PendingAsk:
    """A permission or question the agent is waiting on (OpenCode blocks the turn)."""

    instance: str
    kind: str  # "permission" or "question"
    id: str  # per_... or que_...
    session_id: str
    raw: dict[str, Any]
    directory: str | None = None  # the session's project directory (asks are per directory)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"instance": self.instance, "kind": self.kind, "id": self.id,
                               "session_id": self.session_id}  # fmt: skip
        if self.kind == "permission":
            out["permission"] = self.raw.get("permission")
            out["patterns"] = self.raw.get("patterns") or []
            out["replies"] = ["once", "always", "reject"]
        else:
            questions = self.raw.get("questions") or []
            out["questions"] = [_question(q) for q in questions if isinstance(q, dict)]
        return out


def _question(raw: dict[str, Any]) -> dict[str, Any]:
    options = [o.get("label") if isinstance(o, dict) else o for o in raw.get("options") or []]
    return {"question": raw.get("question"), "header": raw.get("header"), "options": options,
            "multiple": bool(raw.get("multiple"))}  # fmt: skip


PERMISSION_REPLIES = ("once", "always", "reject")


async def session_asks(fleet: Fleet, session_id: str, ref: str | None = None) -> list[PendingAsk]:
    """What the session (and its subagents' sessions) waits on, oldest first."""
    _, asks = await _asks(fleet, session_id, ref)
    return asks


async def _asks(fleet: Fleet, session_id: str, ref: str | None) -> tuple[Session, list[PendingAsk]]:
    record, session = await _locate(fleet, session_id, ref)
    directory = session.directory or record.spec.dir
    endpoint = fleet.endpoint_of(record)
    client = fleet.client(endpoint, timeout=10.0)
    listed, permissions, questions = await asyncio.gather(
        client.sessions(directory),
        client.permissions(directory),
        client.questions(directory),
    )
    ours = {session_id} | {s.id for s in listed if s.parent_id == session_id}
    secrets = endpoint.secrets()  # a permission's patterns hold the command it asks for
    return session, [
        PendingAsk(
            record.name,
            kind,
            str(item["id"]),
            str(item["sessionID"]),
            redact_data(item, secrets),
            directory,
        )
        for kind, items in (("permission", permissions), ("question", questions))
        for item in items
        if isinstance(item, dict) and item.get("sessionID") in ours and item.get("id")
    ]


async def _pending(
    fleet: Fleet, session_id: str, ask_id: str, kind: str, ref: str | None
) -> tuple[InstanceRecord, PendingAsk, list[str]]:
    """The ask, where it is, and the sessions whose task owns it (its own, the one named,
    and that one's parent: a subagent's ask is its parent task's)."""
    session, asks = await _asks(fleet, session_id, ref)
    found = next((a for a in asks if a.id == ask_id), None)
    if found is None or found.kind != kind:
        waiting = ", ".join(f"{a.kind} {a.id}" for a in asks) or "nothing"
        raise NotFoundError(
            f"no pending {kind} {ask_id} in session {session_id} (it waits on {waiting})"
        )
    owners = [found.session_id, session_id, session.parent_id or ""]
    return await asyncio.to_thread(fleet.resolve_running, found.instance), found, owners


async def _recorded(store: TaskStore, owners: list[str], ask: PendingAsk, answer: str) -> None:
    """The answer in the record of the task that owns the session: nobody may be following
    it (a detached task: `ocm run --async`, MCP's `task_run`) to record it from the event."""
    entry = Ask(ask.kind, ask.id, ask.session_id, ask.raw).entry(answer)
    # The answer went out: a registry locked past its timeout only costs the record's note
    # (a runner following the task still records it from the event).
    with contextlib.suppress(OcmError):
        await asyncio.to_thread(store.note_ask, owners, entry)


async def reply_permission(
    fleet: Fleet,
    store: TaskStore,
    session_id: str,
    ask_id: str,
    reply: str,
    message: str | None = None,
    ref: str | None = None,
) -> PendingAsk:
    """Answer a pending permission: once, always or reject (with a message for the agent);
    recorded in its task's record."""
    if reply not in PERMISSION_REPLIES:
        raise UsageError(f"invalid reply {reply!r}: use one of {', '.join(PERMISSION_REPLIES)}")
    record, ask, owners = await _pending(fleet, session_id, ask_id, "permission", ref)
    client = fleet.client(record)
    await client.reply_permission(ask_id, reply, message, ask.directory, session_id=ask.session_id)
    await _recorded(store, owners, ask, answer_of("permission.replied", {"reply": reply}))
    return ask


async def answer_question(
    fleet: Fleet,
    store: TaskStore,
    session_id: str,
    ask_id: str,
    answers: list[list[str]] | None,
    ref: str | None = None,
) -> PendingAsk:
    """Answer a pending question (one list of chosen labels per question), or reject it
    (answers None); recorded in its task's record."""
    record, ask, owners = await _pending(fleet, session_id, ask_id, "question", ref)
    if answers is not None:
        count = len(ask.raw.get("questions") or [])
        if len(answers) != count:
            raise UsageError(
                f"question {ask_id} has {count} question(s): give one list of answers for each"
            )
    client = fleet.client(record)
    if answers is None:
        await client.reject_question(ask_id, ask.directory, session_id=ask.session_id)
        answer = answer_of("question.rejected", {})
    else:
        await client.reply_question(ask_id, answers, ask.directory, session_id=ask.session_id)
        answer = answer_of("question.replied", {"answers": answers})
    await _recorded(store, owners, ask, answer)
    return ask


async def _wait_idle(client: AsyncOpencodeClient, session: Session, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if session.id not in await client.session_status(session.directory):
            return
        await asyncio.sleep(0.1)  # polling for idle with a deadline


async def api(
    fleet: Fleet,
    ref: str,
    method: str,
    path: str,
    data: str | None = None,
    directory: str | None = None,
) -> Any:
    """Any API call, authenticated; JSON in and out."""
    method = method.upper()
    if method not in _METHODS:
        raise UsageError(f"invalid method {method!r}: use one of {', '.join(_METHODS)}")
    body: Any = None
    if data is not None:
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise UsageError(f"invalid --data: not JSON ({exc.args[0]})") from None
    found = await asyncio.to_thread(fleet.find, ref)
    if isinstance(found, ForeignServer) and method != "GET":
        raise ConflictError(
            f"{ref} is an OpenCode server ocm did not start (pid {found.pid}): only GET "
            "(read-only) calls go to it"
        )
    endpoint = await asyncio.to_thread(fleet.reader, ref)
    client = fleet.client(endpoint, timeout=60.0)
    try:
        answer = await client.call(ops.raw(method, path, body=body, directory=directory))
    except ServerRefused as exc:
        if endpoint.line is Line.V2 and not path.startswith("/api/") and exc.status_code != 401:
            # A 1.x route on a 2.x server reaches its web app (a page, or 405 for a POST).
            raise ServerRefused(
                f"{exc}; OpenCode 2.x serves its API under /api/: try /api{path}",
                instance=exc.instance,
                status_code=exc.status_code,
                detail=exc.detail,
            ) from None
        raise
    return redact_data(answer, endpoint.secrets())


async def attach_command(
    fleet: Fleet, ref: str, *, session_id: str | None = None, directory: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment for OpenCode's TUI on an instance (`opencode attach` on
    1.x, `opencode --server` on 2.x), run by a binary of the server's line: the instance's
    own when it has one (OpenCode need not be on PATH). Credentials go by environment, never
    in argv. A session that is not there is refused here, in one line: OpenCode's TUI would
    exit 1 with raw colour codes."""
    from ..instances import binary as binaries

    endpoint = await asyncio.to_thread(fleet.reader, ref)  # a foreign server too
    found = await asyncio.to_thread(fleet.find, ref)
    own = found.spec.opencode if isinstance(found, InstanceRecord) else None
    binary = await asyncio.to_thread(binaries.for_line, fleet.settings, endpoint.line, own)
    if session_id:
        if not session_id.startswith("ses"):
            raise UsageError(f"invalid session id {session_id!r}: session ids start with ses_")
        try:
            await fleet.client(endpoint, timeout=10.0).session(session_id)
        except SessionNotFound:
            raise NotFoundError(
                f"no session {session_id} on {endpoint.name or ref}; see `ocm sessions {ref}`"
            ) from None
    argv = binaries.tui_argv(
        binary.path, endpoint.line, endpoint.url, session_id=session_id, directory=directory
    )
    env = {"OPENCODE_SERVER_USERNAME": endpoint.username}
    if endpoint.password:
        env["OPENCODE_SERVER_PASSWORD"] = endpoint.password
        if endpoint.line is Line.V2:
            env["OPENCODE_PASSWORD"] = endpoint.password  # 2.x's clients read this one first
    return argv, env
