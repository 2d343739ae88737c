"""Warm a server that just answered its health check, so its first task is not its slowest.

A fresh ``opencode serve`` answers health long before its first prompt is cheap. That prompt
bootstraps the directory (config layers, plugins, agents, the provider catalogue), and then
OpenCode 1.18 builds the session runner's own services for the directory (`booting location
services`: file watcher, tools, skills; a copy apart from the one its HTTP routes build, and
kept 60 idle minutes), parses the shell tool's grammar once per process on the first shell
step, and streams from the model for the first time. No read-only route reaches the runner's
copy (bench/NOTES.md lists what was tried); only a prompt does. 2.x builds its location
services per directory on first use as well (`location services booted`, 0.3-1.1 s).

So the warm-up is two real turns, on both lines, answered by ocm's own model (warmmodel.py,
the provider `ocm-warmup`; never the user's model, so no tokens are spent), each in a session
it titles (no title call) and deletes:

* a text turn in the instance's directory (only when the warm-up provider could be added
  there: instances/warmprovider.py says when; else, on 1.x, the read-only calls that
  bootstrap the directory, as before);
* a shell turn (`true`) in a throw-away directory the keeper makes and removes, which
  configures the provider for itself: the shell tool's first use, never in the user's
  project.

On 1.x the runner's services expire after 60 idle minutes: `rewarm_due` says when to warm
the directory again (after `REWARM_AFTER` of no turn the keeper saw), so a first task after
a quiet hour is not cold either. 2.1.2 keeps a directory's services for the life of the
process (its location map has no idle limit), so it is warmed once.

Nothing here may fail a start: everything runs within one budget (``OCM_WARMUP_TIMEOUT``);
a step that fails or runs out of time is reported and the rest skipped or left to the first
task; a session left mid-turn is interrupted and deleted within `CLEANUP_TIMEOUT` more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from ..deadline import within
from ..errors import OcmError
from ..instances.warmprovider import MODEL_ID, PROVIDER_ID
from ..lines import Line

TITLE = "ocm warm-up"
TEXT_PROMPT = "ocm warm-up"  # the warm-up model answers it with a line of text
SHELL_PROMPT = "BASH: true"  # ... with one call of the line's shell tool, then text
#: 1.x's read-only calls that bootstrap a directory (config layers and plugins, agents, the
#: provider catalogue): the warm-up of the directory when no turn may run there.
READ_STEPS = ("/config", "/agent", "/config/providers")
CLEANUP_TIMEOUT = 5.0
#: OpenCode 1.x drops a directory's runner services after 60 idle minutes: warm again a
#: little before that.
REWARM_AFTER = 55 * 60.0

#: An HTTP call to the server: (method, target, JSON body or None, timeout, keep the answer)
#: -> the JSON answer; raises OcmError (the keeper's `Probe.call` bound to the endpoint).
Call = Callable[[str, str, object, float, bool], Awaitable[Any]]


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    body: object = None


@dataclass(frozen=True)
class Turn:
    """One prompt in a fresh session of ``directory``."""

    label: str
    directory: str
    text: str


@dataclass(frozen=True)
class Read:
    """One read-only call naming the directory (1.x)."""

    path: str
    directory: str

    @property
    def label(self) -> str:
        return self.path

    @property
    def target(self) -> str:
        return f"{self.path}?directory={quote(self.directory, safe='')}"


Step = Turn | Read


class Sessions(Protocol):
    """A line's session calls, as data (pure)."""

    def create(self, directory: str) -> Request: ...
    def ident(self, answer: Any) -> str: ...
    def turn(self, session: str, text: str) -> list[Request]: ...
    def problem(self, answers: Sequence[Any]) -> str | None: ...
    def interrupt(self, session: str) -> Request: ...
    def delete(self, session: str) -> Request: ...


class V1Sessions:
    """OpenCode 1.x: `/session`, a synchronous `/message` naming the model per prompt."""

    def create(self, directory: str) -> Request:
        rules = [
            {"permission": "bash", "action": "allow", "pattern": "*"},
            {"permission": "question", "action": "deny", "pattern": "*"},
        ]
        target = f"/session?directory={quote(directory, safe='')}"
        return Request("POST", target, {"title": TITLE, "permission": rules})

    def ident(self, answer: Any) -> str:
        return str(answer["id"])

    def turn(self, session: str, text: str) -> list[Request]:
        body = {
            "parts": [{"type": "text", "text": text}],
            "model": {"providerID": PROVIDER_ID, "modelID": MODEL_ID},
        }
        return [Request("POST", f"/session/{session}/message", body)]

    def problem(self, answers: Sequence[Any]) -> str | None:
        info = answers[-1].get("info") if isinstance(answers[-1], dict) else None
        error = info.get("error") if isinstance(info, dict) else None
        if not error:
            return None
        data = error.get("data") if isinstance(error, dict) else None
        message = data.get("message") if isinstance(data, dict) else None
        return str(message or error)

    def interrupt(self, session: str) -> Request:
        return Request("POST", f"/session/{session}/abort")

    def delete(self, session: str) -> Request:
        return Request("DELETE", f"/session/{session}")


class V2Sessions:
    """OpenCode 2.x: `/api/session` with the model at creation, a durable prompt, then
    `wait` until the agent loop is idle and the session's `outcome`."""

    def create(self, directory: str) -> Request:
        body = {
            "title": TITLE,
            "location": {"directory": directory},
            "model": {"id": MODEL_ID, "providerID": PROVIDER_ID},
            "permissions": [{"action": "shell", "resource": "*", "effect": "allow"}],
        }
        return Request("POST", "/api/session", body)

    def ident(self, answer: Any) -> str:
        return str(answer["data"]["id"])

    def turn(self, session: str, text: str) -> list[Request]:
        return [
            Request("POST", f"/api/session/{session}/prompt", {"text": text}),
            Request("POST", f"/api/experimental/session/{session}/wait"),
            Request("GET", f"/api/session/{session}"),
        ]

    def problem(self, answers: Sequence[Any]) -> str | None:
        data = answers[-1].get("data") if isinstance(answers[-1], dict) else None
        outcome = data.get("outcome") if isinstance(data, dict) else None
        return None if outcome == "succeeded" else f"the turn ended {outcome or 'unknown'}"

    def interrupt(self, session: str) -> Request:
        return Request("POST", f"/api/session/{session}/interrupt")

    def delete(self, session: str) -> Request:
        return Request("DELETE", f"/api/session/{session}")


def sessions_of(line: Line) -> Sessions:
    return V2Sessions() if line is Line.V2 else V1Sessions()


def plan(line: Line, directory: str, scratch: str | None, *, provided: bool) -> list[Step]:
    """The warm-up's steps: a text turn in the directory when the warm-up provider is in
    its config (`provided`; else 1.x's read-only bootstrap of it), then the shell turn in
    the throw-away directory (`scratch`, None: none)."""
    steps: list[Step] = []
    if provided:
        steps.append(Turn("text turn", directory, TEXT_PROMPT))
    elif line is Line.V1:
        steps += [Read(path, directory) for path in READ_STEPS]
    if scratch is not None:
        steps.append(Turn("shell turn", scratch, SHELL_PROMPT))
    return steps


def rewarm_due(line: Line | None, last_use: float, now: float, after: float = REWARM_AFTER) -> bool:
    """Whether a 1.x server's directory has gone `after` seconds without a turn (the
    warm-up's or one the keeper saw running), so its runner is about to be dropped."""
    return line is Line.V1 and now - last_use >= after


@dataclass
class Warmup:
    """How a warm-up went."""

    seconds: float
    done: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # "STEP: reason"
    timed_out: bool = False
    model_requests: int = 0  # answered by the warm-up model (set by the keeper)
    cpu_seconds: float | None = None  # the server's CPU during the warm-up (set by the keeper)
    planned: int = 0
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the keeper's log."""
        done = ", ".join(self.done) or "nothing"
        text = f"warmed up in {self.seconds:.2f} s ({done}; {len(self.done)}/{self.planned} steps"
        text += f", {self.model_requests} request(s) to ocm's warm-up model"
        if self.cpu_seconds is not None:
            text += f", {self.cpu_seconds:.2f} s of server CPU"
        text += ")"
        if self.timed_out:
            text += "; budget spent, the rest is left to the first task"
        if self.failed:
            text += "; failed: " + "; ".join(self.failed)
        return text


class _Spent(Exception):
    """The budget ran out."""


async def warm_up(
    call: Call,
    line: Line,
    steps: Sequence[Step],
    *,
    budget: float,
    clock: Callable[[], float],
) -> Warmup:
    """Run the steps in order, all within `budget` seconds; never raises OcmError."""
    began = clock()
    deadline = began + budget
    sessions = sessions_of(line)
    done: list[str] = []
    failed: list[str] = []

    def result(timed_out: bool = False) -> Warmup:
        return Warmup(clock() - began, tuple(done), tuple(failed), timed_out, planned=len(steps))

    async def timed(request: Request, keep: bool = True) -> Any:
        left = deadline - clock()
        if left <= 0:
            raise _Spent
        try:
            return await within(
                call(request.method, request.target, request.body, left, keep), left
            )
        except (OcmError, asyncio.TimeoutError):
            if deadline - clock() <= 0:
                raise _Spent from None
            raise

    for step in steps:
        try:
            if isinstance(step, Read):
                await timed(Request("GET", step.target), keep=False)
            else:
                problem = await _turn(timed, call, sessions, step)
                if problem is not None:
                    failed.append(f"{step.label}: {problem}")
                    continue
        except _Spent:
            return result(timed_out=True)
        except (OcmError, asyncio.TimeoutError, KeyError, TypeError) as exc:
            failed.append(f"{step.label}: {exc or exc.__class__.__name__}")
            continue
        done.append(step.label)
    return result()


async def _turn(
    timed: Callable[[Request], Awaitable[Any]], call: Call, sessions: Sessions, turn: Turn
) -> str | None:
    """One turn in a fresh session, deleted afterwards (interrupted first when it did not
    finish: 1.x keeps running a deleted session's turn). Its problem, or None."""
    session: str | None = None
    finished = False
    try:
        session = sessions.ident(await timed(sessions.create(turn.directory)))
        answers = [await timed(request) for request in sessions.turn(session, turn.text)]
        finished = True
        return sessions.problem(answers)
    finally:
        if session is not None:
            await _clean_up(call, sessions, session, interrupt=not finished)


async def _clean_up(call: Call, sessions: Sessions, session: str, *, interrupt: bool) -> None:
    """Delete a warm-up session (interrupt it first if need be), within CLEANUP_TIMEOUT;
    runs even while the warm-up is being cancelled."""
    requests = [sessions.interrupt(session)] if interrupt else []
    requests.append(sessions.delete(session))

    async def clean() -> None:
        for request in requests:
            try:
                await call(request.method, request.target, request.body, CLEANUP_TIMEOUT, False)
            except OcmError:
                continue

    # Shielded: a stop request cancels the warm-up, and the session must still go.
    cleaning = asyncio.ensure_future(within(clean(), CLEANUP_TIMEOUT))
    try:
        await asyncio.shield(cleaning)
    except asyncio.TimeoutError:
        return
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await cleaning
        raise
