"""Playing a fake OpenCode server's turns: the events and stored messages of each step of
a script (`testing.script`), in the order OpenCode 1.18.33 makes them (OPENCODE-FACTS §5-6).

The server (`testing.opencode.FakeOpencode`) is the stage: it sends the events to its
streams and keeps the sessions and asks; the `Player` only says what happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..client import identifiers
from .script import (
    Child,
    Fail,
    Hang,
    Pause,
    Permission,
    Question,
    Reply,
    Retry,
    Step,
    Tool,
)

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_fake{next(_ids):08d}"


def now_ms() -> float:
    return time.time() * 1000.0


@dataclass
class FakeTurn:
    """One model call: the prompt that made it, where, and how it went."""

    session_id: str
    message_id: str
    prompt: str
    body: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    aborted: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass
class FakeSession:
    id: str
    directory: str
    title: str
    parent_id: str | None = None
    created: float = field(default_factory=now_ms)
    messages: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] | None = None  # None: idle (absent from /session/status)
    todos: list[dict[str, Any]] = field(default_factory=list)
    diffs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # user msg -> diff
    turn: FakeTurn | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "directory": self.directory,
            "projectID": "global",
            "version": "1.18.33",
            "time": {"created": self.created, "updated": self.created},
        }
        if self.parent_id:
            data["parentID"] = self.parent_id
        return data

    def message(self, message_id: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["info"]["id"] == message_id), None)


@dataclass
class PendingAsk:
    kind: str  # permission or question
    data: dict[str, Any]
    directory: str
    answer: asyncio.Future[tuple[str, Any]]


def part(session: FakeSession, message_id: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A stored part of a message (ids as OpenCode's)."""
    return {"id": new_id("prt"), "sessionID": session.id, "messageID": message_id, **raw}


class Stage(Protocol):
    """What the player needs of its server."""

    pace: float  # seconds between two events of a turn
    asks: dict[str, PendingAsk]
    starts: asyncio.Event  # a turn starts once it is set

    def emit(self, kind: str, properties: dict[str, Any], directory: str | None = None) -> None: ...

    def new_session(
        self, directory: str, title: str | None, parent: str | None = None
    ) -> FakeSession: ...


class Player:
    """Plays each turn's steps on a stage."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    async def _tick(self) -> None:
        await asyncio.sleep(self.stage.pace)  # the pace of the fake model (0: just a yield)

    async def run(self, session: FakeSession, turn: FakeTurn, user: dict[str, Any]) -> None:
        await self.stage.starts.wait()  # stored, not started (a loaded server)
        async with session.lock:  # a prompt to a busy session waits for its turn
            session.turn = turn
            turn.started_at = time.monotonic()
            try:
                await self._play(session, turn, user)
            finally:
                session.turn = None
                turn.ended_at = time.monotonic()
                turn.done.set()

    async def _play(self, session: FakeSession, turn: FakeTurn, user: dict[str, Any]) -> None:
        d = session.directory
        self.stage.emit("message.updated", {"info": user["info"]}, d)
        for part in user["parts"]:
            self.stage.emit("message.part.updated", {"part": part}, d)
        self._status(session, {"type": "busy"})
        answer: dict[str, Any] | None = None
        for step in turn.steps:
            await self._tick()
            if turn.aborted.is_set():
                break
            if isinstance(step, Fail):
                await self._fail(session, turn, step)
                return
            answer = await self._step(session, turn, step)
        if turn.aborted.is_set():
            await self._aborted(session, answer, turn)
            return
        self._idle(session)

    async def _step(
        self, session: FakeSession, turn: FakeTurn, step: Step
    ) -> dict[str, Any] | None:
        if isinstance(step, Reply):
            return await self._reply(session, turn, step)
        if isinstance(step, Tool):
            return await self._tool(session, turn, step)
        if isinstance(step, Permission | Question):
            return await self._ask(session, turn, step)
        if isinstance(step, Retry):
            for attempt in range(1, step.attempts + 1):
                self._status(
                    session,
                    {
                        "type": "retry",
                        "attempt": attempt,
                        "message": step.message,
                        "next": now_ms() + 1000,
                    },
                )
                await self._tick()
                self._status(session, {"type": "busy"})
            return None
        if isinstance(step, Child):
            child = self.stage.new_session(
                session.directory, f"{step.text} (@general subagent)", session.id
            )
            self._status(child, {"type": "busy"})
            await self._reply(child, FakeTurn(child.id, "", step.text, {}), Reply(step.text))
            self._idle(child)
            return None
        if isinstance(step, Pause):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(turn.aborted.wait(), step.seconds)
            return None
        if isinstance(step, Hang):
            await turn.aborted.wait()
            return None
        raise TypeError(f"not a step of a fake turn: {step!r}")

    def _status(self, session: FakeSession, status: dict[str, Any] | None) -> None:
        session.status = status
        shown = status or {"type": "idle"}
        self.stage.emit(
            "session.status", {"sessionID": session.id, "status": shown}, session.directory
        )

    def _idle(self, session: FakeSession) -> None:
        self._status(session, None)
        self.stage.emit("session.idle", {"sessionID": session.id}, session.directory)

    def _assistant(self, session: FakeSession, turn: FakeTurn) -> dict[str, Any]:
        info = {
            "id": identifiers.message_id(after=turn.message_id or None),
            "role": "assistant",
            "sessionID": session.id,
            "parentID": turn.message_id or None,
            "mode": "build",
            "agent": "build",
            "modelID": "fake-model",
            "providerID": "fake",
            "cost": 0,
            "tokens": {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}},
            "time": {"created": now_ms()},
        }
        message: dict[str, Any] = {"info": info, "parts": []}
        session.messages.append(message)
        self.stage.emit("message.updated", {"info": info}, session.directory)
        self._add_part(session, message, {"type": "step-start"})
        return message

    def _add_part(
        self, session: FakeSession, message: dict[str, Any], raw: dict[str, Any]
    ) -> dict[str, Any]:
        made = part(session, message["info"]["id"], raw)
        message["parts"].append(made)
        self.stage.emit("message.part.updated", {"part": made}, session.directory)
        return made

    def _update_part(self, session: FakeSession, part: dict[str, Any], **changes: Any) -> None:
        part.update(changes)
        self.stage.emit("message.part.updated", {"part": dict(part)}, session.directory)

    def _complete(
        self,
        session: FakeSession,
        message: dict[str, Any],
        finish: str,
        tokens: dict[str, Any] | None = None,
        cost: float = 0.0,
    ) -> None:
        info = message["info"]
        self._add_part(session, message, {"type": "step-finish", "reason": finish})
        if tokens:
            info["tokens"] = {**info["tokens"], **tokens}
        info["cost"] = cost
        info["finish"] = finish
        info["time"]["completed"] = now_ms()
        for _ in range(2):  # OpenCode sends the final message.updated twice (§6.2)
            self.stage.emit("message.updated", {"info": dict(info)}, session.directory)

    async def _reply(self, session: FakeSession, turn: FakeTurn, step: Reply) -> dict[str, Any]:
        message = self._assistant(session, turn)
        part = self._add_part(
            session, message, {"type": "text", "text": "", "time": {"start": now_ms()}}
        )
        words = step.text.split(" ")
        for i, word in enumerate(words):
            delta = word + (" " if i < len(words) - 1 else "")
            self.stage.emit(
                "message.part.delta",
                {
                    "sessionID": session.id,
                    "messageID": message["info"]["id"],
                    "partID": part["id"],
                    "field": "text",
                    "delta": delta,
                },
                session.directory,
            )
            await self._tick()
        self._update_part(
            session, part, text=step.text, time={"start": part["time"]["start"], "end": now_ms()}
        )
        self._complete(session, message, "stop", step.tokens, step.cost)
        return message

    async def _tool(self, session: FakeSession, turn: FakeTurn, step: Tool) -> dict[str, Any]:
        message = self._assistant(session, turn)
        call_id = new_id("call")
        started = now_ms()
        part = self._add_part(
            session,
            message,
            {
                "type": "tool",
                "tool": step.tool,
                "callID": call_id,
                "state": {"status": "pending", "input": {}, "raw": ""},
            },
        )
        if step.todos is not None:
            session.todos = [dict(t) for t in step.todos]
            self.stage.emit(
                "todo.updated", {"sessionID": session.id, "todos": session.todos}, session.directory
            )
        self._update_part(
            session,
            part,
            state={"status": "running", "input": step.input, "time": {"start": started}},
        )
        await self._tick()
        if step.diff:
            session.diffs.setdefault(turn.message_id, []).extend(dict(d) for d in step.diff)
        self._update_part(
            session,
            part,
            state={
                "status": "completed",
                "input": step.input,
                "output": step.output,
                "title": step.tool,
                "metadata": {"output": step.output, "exit": 0},
                "time": {"start": started, "end": now_ms()},
            },
        )
        self._complete(session, message, "tool-calls")
        return message

    async def _ask(
        self, session: FakeSession, turn: FakeTurn, step: Permission | Question
    ) -> dict[str, Any]:
        message = self._assistant(session, turn)
        call_id = new_id("call")
        tool = step.tool if isinstance(step, Permission) else "question"
        part = self._add_part(
            session,
            message,
            {
                "type": "tool",
                "tool": tool,
                "callID": call_id,
                "state": {"status": "running", "input": {}},
            },
        )
        where = {"messageID": message["info"]["id"], "callID": call_id}
        if isinstance(step, Permission):
            kind = "permission"
            data: dict[str, Any] = {
                "id": new_id("per"),
                "sessionID": session.id,
                "permission": step.permission,
                "patterns": list(step.patterns),
                "metadata": {},
                "always": list(step.patterns),
                "tool": where,
            }
        else:
            kind = "question"
            data = {
                "id": new_id("que"),
                "sessionID": session.id,
                "tool": where,
                "questions": [
                    {
                        "question": step.question,
                        "header": "Choice",
                        "options": [{"label": o, "description": o} for o in step.options],
                    }
                ],
            }
        answer: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        self.stage.asks[data["id"]] = PendingAsk(kind, data, session.directory, answer)
        self.stage.emit(f"{kind}.asked", data, session.directory)
        aborted = asyncio.ensure_future(turn.aborted.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {answer, aborted}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            aborted.cancel()
        if not answer.done():
            return message  # aborted while asking: the ask stays listed, stale (§5.7)
        how, value = answer.result()
        props: dict[str, Any] = {"sessionID": session.id, "requestID": data["id"]}
        if kind == "permission":
            self.stage.emit("permission.replied", {**props, "reply": value}, session.directory)
            refused = value == "reject"
        elif how == "reject":
            self.stage.emit("question.rejected", props, session.directory)
            refused = True
        else:
            self.stage.emit("question.replied", {**props, "answers": value}, session.directory)
            refused = False
        state: dict[str, Any] = {"status": "error" if refused else "completed", "input": {}}
        if refused:
            state["error"] = "The user rejected permission to use this specific tool call"
        else:
            state["output"] = json.dumps(value)
        self._update_part(session, part, state=state)
        self._complete(session, message, "tool-calls")
        return message

    async def _fail(self, session: FakeSession, turn: FakeTurn, step: Fail) -> None:
        message = self._assistant(session, turn)
        error = {"name": step.name, "data": {"message": step.message, "isRetryable": False}}
        self.stage.emit(
            "session.error", {"sessionID": session.id, "error": error}, session.directory
        )
        self._idle(session)
        await asyncio.sleep(step.late)  # the error-bearing message comes after the idle
        info = message["info"]
        info["error"] = error
        info["tokens"] = {**info["tokens"], **step.tokens}
        info["time"]["completed"] = now_ms()
        self.stage.emit("message.updated", {"info": dict(info)}, session.directory)
        self._idle(session)  # the second idle (§6.5)

    async def _aborted(
        self, session: FakeSession, message: dict[str, Any] | None, turn: FakeTurn
    ) -> None:
        """§6.6: session.error (aborted), idle, then the message with the error, idle again."""
        error = {"name": "MessageAbortedError", "data": {"message": "Aborted"}}
        if message is None or "completed" in message["info"]["time"]:
            message = self._assistant(session, turn)
        self.stage.emit(
            "session.error", {"sessionID": session.id, "error": error}, session.directory
        )
        self._idle(session)
        await self._tick()
        info = message["info"]
        info["error"] = error
        info["time"]["completed"] = now_ms()
        self.stage.emit("message.updated", {"info": dict(info)}, session.directory)
        self._idle(session)
