"""What a fake OpenCode server's model does with a prompt: a turn's steps, as data.

`FakeOpencode(script=...)` calls the script with each prompt's text and plays the steps it
returns, each with the events and stored messages OpenCode 1.18.33 makes for it
(OPENCODE-FACTS §5-6, named in each step's docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    """A model step that answers with text (streamed as deltas), finish "stop"."""

    text: str
    tokens: dict[str, Any] = field(default_factory=lambda: {"input": 10, "output": 5})
    cost: float = 0.0


@dataclass(frozen=True)
class Tool:
    """A model step that calls a tool (pending, running, completed), finish "tool-calls".
    `diff` is what the turn changed (`GET /session/{id}/diff?messageID=`), `todos` what a
    todowrite wrote."""

    tool: str = "bash"
    input: dict[str, Any] = field(default_factory=lambda: {"command": "echo hi"})
    output: str = "hi\n"
    diff: Sequence[dict[str, Any]] = ()
    todos: Sequence[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Permission:
    """A tool that asks first (`permission.asked`) and blocks the turn until answered; a
    rejected one ends in a tool error the model then reads (§6.7)."""

    permission: str = "external_directory"
    patterns: Sequence[str] = ("/etc/*",)
    tool: str = "read"


@dataclass(frozen=True)
class Question:
    """The question tool: `question.asked`, blocking until replied or rejected (§6.7)."""

    question: str = "Pick a colour?"
    options: Sequence[str] = ("Red", "Blue")


@dataclass(frozen=True)
class Retry:
    """The provider fails and OpenCode retries: `session.status {retry, attempt}` for each
    attempt, alternating with busy (§6.5); then the next step."""

    attempts: int
    message: str = "fake error 500 from scripted LLM"


@dataclass(frozen=True)
class Fail:
    """A final provider error, in 1.18.33's order: `session.error`, idle twice, and the
    error-bearing `message.updated` stored `late` seconds after the first idle (§6.5)."""

    message: str = "fake error 401 from scripted LLM"
    name: str = "APIError"
    late: float = 0.05
    tokens: dict[str, Any] = field(default_factory=lambda: {"input": 7, "output": 0})


@dataclass(frozen=True)
class Refuse:
    """What an unknown agent gets: two `session.error` events and nothing else (no busy, no
    idle, no message; §5.8)."""

    message: str = 'Agent not found: "nosuchagent". Available agents: build, plan'


@dataclass(frozen=True)
class Child:
    """A subagent: a child session that goes busy, answers `text` and goes idle (its own
    idle must not end the parent's turn; §6.8)."""

    text: str = "subtask done"


@dataclass(frozen=True)
class Pause:
    """The model thinks for a while (an abort ends the wait)."""

    seconds: float


@dataclass(frozen=True)
class Hang:
    """The model never answers: the turn runs until it is aborted."""


Step = Reply | Tool | Permission | Question | Retry | Fail | Refuse | Child | Pause | Hang
Script = Callable[[str], Sequence[Step]]


def echo(text: str) -> list[Step]:
    """The default script: one reply saying what was asked."""
    return [Reply(f"You said: {text}")]
