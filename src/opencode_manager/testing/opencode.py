"""A fake OpenCode 1.x server in pure Python, for tests over `httpx.MockTransport`.

No process, no network, no model: every call goes to `FakeOpencode.handle`, which keeps
sessions, messages, asks and event streams in memory and plays each prompt's turn from a
script, with the events and stored messages in the order OpenCode 1.18.33 was seen to make
them (OPENCODE-FACTS §5-6, named where each step is played: testing/turns.py).
That is enough to run ocm's task runner, batches, the monitor and the fleet view, and your
own pipelines, in milliseconds::

    server = FakeOpencode("http://127.0.0.1:4101", script=lambda text: [Reply("done")])
    async with AsyncManager(settings, transport=transport(server)) as ocm:
        record = await ocm.run("hello", TaskOptions(instance="oc-1"))
    assert server.turns[0].prompt == "hello"

A prompt's turn is the script's steps for its text (`Reply`, `Tool`, `Permission`,
`Question`, `Retry`, `Fail`, `Refuse`, `Child`, `Pause`, `Hang`). The model is "called"
once per turn (`turns`); a prompt whose `messageID` the session already has adds its text
part to that message again and runs no turn, as 1.18.33 does (client/identifiers.py).

Faults: `crash()` ends every stream and turn and refuses connections until `restart()`;
`drop_streams()` ends the event streams only (OpenCode has no replay: a client must resync
over REST); `hold_starts()` keeps the turns of prompts taken from then on from starting
until `release_starts()` (a loaded server shows such a prompt stored, the session idle and
no answer); `before` sees every request first and may raise an httpx error or answer it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import httpx

from ..client import identifiers
from .script import (
    Child,
    Fail,
    Hang,
    Pause,
    Permission,
    Question,
    Refuse,
    Reply,
    Retry,
    Script,
    Step,
    Tool,
    echo,
)
from .turns import FakeSession, FakeTurn, PendingAsk, Player, new_id, now_ms, part

__all__ = [
    "Child", "Fail", "FakeOpencode", "FakeSession", "FakeTurn", "Hang", "Pause", "Permission",
    "Question", "Refuse", "Reply", "Retry", "Script", "Step", "Tool", "echo", "transport",
]  # fmt: skip


class _Stream:
    """One open event stream: a queue of frames, closed by None."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory  # None: /global/event
        self.frames: asyncio.Queue[str | None] = asyncio.Queue()


Before = Callable[[httpx.Request], Awaitable[httpx.Response | None]]


class FakeOpencode:
    """One fake OpenCode 1.x server at `url` (nothing listens there: use `transport`)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:4096",
        *,
        directory: str = "/fake/project",
        password: str | None = None,
        username: str = "opencode",
        script: Script = echo,
        version: str = "1.18.33",
        pace: float = 0.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.directory = directory  # the server's own (what a request without one gets)
        self.password = password
        self.username = username
        self.script = script
        self.version = version
        self.pace = pace  # seconds between two events of a turn
        self.sessions: dict[str, FakeSession] = {}
        self.asks: dict[str, PendingAsk] = {}
        self.turns: list[FakeTurn] = []  # every model call, in order
        self.prompts: list[dict[str, Any]] = []  # every prompt body received (resends too)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.down = False
        self.before: Before | None = None
        self.starts = asyncio.Event()  # turns start while it is set (`hold_starts`)
        self.starts.set()
        self._streams: list[_Stream] = []
        self._player = Player(self)

    # -- what a test does to it ------------------------------------------------------------
    @property
    def origin(self) -> tuple[str, str, int | None]:
        url = httpx.URL(self.url)
        return url.scheme, url.host, url.port

    @property
    def streams(self) -> int:
        """Event streams open now."""
        return len(self._streams)

    def busy(self) -> dict[str, dict[str, Any]]:
        """The busy sessions (in every directory), as /session/status shows them."""
        return {s.id: dict(s.status) for s in self.sessions.values() if s.status}

    def most_at_once(self) -> int:
        """The most turns that ran at the same time on this server."""
        edges = sorted(
            [(t.started_at, 1) for t in self.turns]
            + [(t.ended_at, -1) for t in self.turns if t.ended_at is not None]
        )
        most = now = 0
        for _, step in edges:
            now += step
            most = max(most, now)
        return most

    def prompt(self, text: str, *, directory: str | None = None) -> FakeTurn:
        """Somebody else's prompt on this server (a new session): busy work a placement
        sees. Returns its turn (ValueError for a prompt the script `Refuse`s: it has none)."""
        session = self.new_session(directory or self.directory, "someone else's")
        turn = self._prompt(session, {"parts": [{"type": "text", "text": text}]})
        if turn is None:
            raise ValueError(f"the script refuses {text!r}: no turn to run")
        return turn

    def drop_streams(self) -> None:
        """End every open event stream (the connection closes; no event says so)."""
        for stream in self._streams:
            stream.frames.put_nowait(None)
        self._streams.clear()

    def crash(self) -> None:
        """The server dies: streams end, turns stop where they are (their messages stay as
        stored), and nothing answers until `restart`."""
        self.down = True
        self.drop_streams()
        for session in self.sessions.values():
            if session.turn is not None and session.turn.task is not None:
                session.turn.task.cancel()
            session.status = None

    def restart(self) -> None:
        """Back up, with the sessions and messages stored before the crash."""
        self.down = False

    def hold_starts(self) -> None:
        """Prompts taken from now on are stored at once (their user message shows, the
        session stays idle, nothing answers) and their turns start only at
        `release_starts`: OpenCode 1.18.33 stores the user message before its loop starts,
        and a loaded server shows that for seconds."""
        self.starts.clear()

    def release_starts(self) -> None:
        self.starts.set()

    def pending(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The asks waiting for an answer (as GET /permission and /question list them)."""
        return [a.data for a in self.asks.values() if kind in (None, a.kind)]

    async def wait_for_ask(self, timeout: float = 5.0) -> dict[str, Any]:
        """The first ask made (waiting for one)."""

        async def first() -> dict[str, Any]:
            while not self.asks:
                await asyncio.sleep(0.005)  # polling the fake's own state, with a deadline
            return next(iter(self.asks.values())).data

        return await asyncio.wait_for(first(), timeout)

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait until no turn runs."""

        async def quiet() -> None:
            while any(s.turn is not None for s in self.sessions.values()):
                await asyncio.sleep(0.005)  # polling the fake's own state, with a deadline

        await asyncio.wait_for(quiet(), timeout)

    async def aclose(self) -> None:
        """Stop every turn and stream (a test's teardown)."""
        tasks = [s.turn.task for s in self.sessions.values() if s.turn and s.turn.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.drop_streams()

    # -- HTTP --------------------------------------------------------------------------------
    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request as OpenCode 1.18.33 would."""
        self.requests.append((request.method, request.url.path))
        if self.before is not None:
            answer = await self.before(request)
            if answer is not None:
                return answer
        if self.down:
            raise httpx.ConnectError("connection refused (fake server is down)", request=request)
        if self.password is not None and not self._authorized(request):
            return httpx.Response(401, text="Unauthorized")
        await request.aread()
        body: Any = json.loads(request.content) if request.content else None
        directory = unquote(request.headers.get("x-opencode-directory") or "") or self.directory
        return await self._route(request, request.method, request.url.path, body, directory)

    def _authorized(self, request: httpx.Request) -> bool:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return bool(request.headers.get("authorization") == f"Basic {token}")

    async def _route(
        self, request: httpx.Request, method: str, path: str, body: Any, directory: str
    ) -> httpx.Response:
        parts = path.strip("/").split("/")
        if path == "/global/health":
            return _json({"healthy": True, "version": self.version})
        if path == "/global/dispose" and method == "POST":
            return _json(True)
        if path in ("/event", "/global/event") and method == "GET":
            return self._subscribe(None if path == "/global/event" else directory)
        if path == "/session/status" and method == "GET":
            return _json(
                {
                    s.id: dict(s.status)
                    for s in self.sessions.values()
                    if s.status and s.directory == directory
                }
            )
        if path == "/session" and method == "GET":
            return _json([s.info() for s in self.sessions.values() if s.directory == directory])
        if path == "/session" and method == "POST":
            session = self.new_session(directory, (body or {}).get("title"))
            return _json(session.info())
        if parts[0] == "session" and len(parts) >= 2:
            return await self._session_route(request, method, parts[1], parts[2:], body)
        if parts[0] in ("permission", "question"):
            return self._ask_route(method, parts, body, directory)
        simple: dict[str, Any] = {
            "/agent": [{"name": n} for n in ("build", "explore", "general", "plan")],
            "/config": {},
            "/mcp": {},
            "/lsp": [],
            "/path": {"directory": directory, "worktree": directory},
        }
        if path in simple and method == "GET":
            return _json(simple[path])
        return _web_page()

    async def _session_route(
        self, request: httpx.Request, method: str, session_id: str, rest: list[str], body: Any
    ) -> httpx.Response:
        session = self.sessions.get(session_id)
        if rest == ["abort"] and method == "POST":
            if session is not None and session.turn is not None:
                session.turn.aborted.set()
            return _json(True)  # also for a session that does not exist (§5.7)
        if rest == ["diff"] and session is None:
            return _json([])
        if session is None:
            return _not_found(f"Session not found: {session_id}")
        if not rest:
            if method == "DELETE":
                del self.sessions[session_id]
                return _json(True)
            return _json(session.info())
        if rest == ["message"] and method == "GET":
            limit = int(request.url.params.get("limit") or 0)
            return _json(session.messages[-limit:] if limit else session.messages)
        if len(rest) == 2 and rest[0] == "message" and method == "GET":
            found = session.message(rest[1])
            if found is None:
                return _not_found(f"Message not found: {rest[1]}")
            return _json(found)
        if rest in (["prompt_async"], ["message"]) and method == "POST":
            turn = self._prompt(session, body or {})
            if rest == ["prompt_async"]:
                return httpx.Response(204)
            if turn is not None:
                await turn.done.wait()
            last: dict[str, Any] = next(
                (m for m in reversed(session.messages) if m["info"]["role"] == "assistant"), {}
            )
            return _json(last)
        if rest == ["todo"]:
            return _json(session.todos)
        if rest == ["diff"]:
            return _json(session.diffs.get(request.url.params.get("messageID") or "", []))
        return _web_page()

    def _ask_route(
        self, method: str, parts: list[str], body: Any, directory: str
    ) -> httpx.Response:
        kind = parts[0]
        if len(parts) == 1 and method == "GET":
            return _json(
                [a.data for a in self.asks.values() if a.kind == kind and a.directory == directory]
            )
        if len(parts) == 3 and method == "POST":
            ask = self.asks.get(parts[1])
            if ask is None or ask.kind != kind:
                return _not_found(f"{kind} {parts[1]} not found")
            del self.asks[parts[1]]
            if kind == "permission":
                answer: tuple[str, Any] = ("reply", (body or {}).get("reply"))
            elif parts[2] == "reject":
                answer = ("reject", None)
            else:
                answer = ("reply", (body or {}).get("answers"))
            if not ask.answer.done():
                ask.answer.set_result(answer)
            return _json(True)
        return _web_page()

    # -- streams -----------------------------------------------------------------------------
    def _subscribe(self, directory: str | None) -> httpx.Response:
        stream = _Stream(directory)
        self._streams.append(stream)
        stream.frames.put_nowait(json.dumps({"type": "server.connected", "properties": {}}))

        async def frames() -> AsyncIterator[bytes]:
            try:
                while (frame := await stream.frames.get()) is not None:
                    yield f"data: {frame}\n\n".encode()
            finally:
                with contextlib.suppress(ValueError):
                    self._streams.remove(stream)

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=frames())

    def emit(self, kind: str, properties: dict[str, Any], directory: str | None = None) -> None:
        """Send an event to the streams of `directory` (the server's own by default) and to
        every `/global/event` stream."""
        directory = directory or self.directory
        event = {"id": new_id("evt"), "type": kind, "properties": properties}
        for stream in self._streams:
            if stream.directory is None:
                frame = {"directory": directory, "project": "global", "payload": event}
                stream.frames.put_nowait(json.dumps(frame))
            elif stream.directory == directory:
                stream.frames.put_nowait(json.dumps(event))

    # -- sessions and turns ------------------------------------------------------------------
    def new_session(
        self, directory: str, title: str | None, parent: str | None = None
    ) -> FakeSession:
        session = FakeSession(new_id("ses"), directory, title or "New session", parent)
        self.sessions[session.id] = session
        self.emit("session.created", {"info": session.info()}, directory)
        return session

    def _prompt(self, session: FakeSession, body: dict[str, Any]) -> FakeTurn | None:
        self.prompts.append(body)
        text_parts = [dict(p) for p in body.get("parts") or [] if isinstance(p, dict)]
        message_id = str(body.get("messageID") or identifiers.message_id())
        known = session.message(message_id)
        if known is not None:  # 1.18.33: the part is added again, the model is not called
            known["parts"] += [part(session, message_id, p) for p in text_parts]
            return None
        prompt = "".join(str(p.get("text") or "") for p in text_parts)
        steps = list(self.script(prompt))
        if steps and isinstance(steps[0], Refuse):
            # An unknown agent: two errors, no busy, no idle, no message stored (§5.8).
            error = {"name": "UnknownError", "data": {"message": steps[0].message}}
            for _ in range(2):
                self.emit("session.error", {"sessionID": session.id, "error": error},
                          session.directory)  # fmt: skip
            return None
        info = {
            "id": message_id,
            "role": "user",
            "sessionID": session.id,
            "time": {"created": now_ms()},
            "agent": body.get("agent") or "build",
        }
        user = {"info": info, "parts": [part(session, message_id, p) for p in text_parts]}
        session.messages.append(user)
        turn = FakeTurn(session.id, message_id, prompt, body, steps)
        self.turns.append(turn)
        turn.task = asyncio.create_task(self._player.run(session, turn, user))
        return turn


def _web_page() -> httpx.Response:
    """What OpenCode answers any route it does not have with: its web UI (§5.8)."""
    return httpx.Response(200, text="<html>OpenCode</html>", headers={"content-type": "text/html"})


def _json(data: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=data)


def _not_found(message: str) -> httpx.Response:
    return _json({"name": "NotFoundError", "data": {"message": message}}, 404)


def transport(*servers: FakeOpencode) -> httpx.MockTransport:
    """A transport that carries each request to the fake server at its URL; a URL where no
    fake server is refuses the connection, as a closed port does."""
    by_origin = {server.origin: server for server in servers}

    async def handle(request: httpx.Request) -> httpx.Response:
        server = by_origin.get((request.url.scheme, request.url.host, request.url.port))
        if server is None:
            raise httpx.ConnectError(f"no fake server at {request.url}", request=request)
        return await server.handle(request)

    return httpx.MockTransport(handle)
