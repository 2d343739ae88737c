"""The one exception tree of opencode-manager.

Every error a user can meet is an :class:`OcmError`. The CLI catches that base once, prints
``str(error)`` on one line and exits with ``error.exit_code``; library users catch the subclass
they care about. Messages say what went wrong and what to do about it.

    OcmError                         exit 1
    ├── UsageError                   exit 2   bad input: ports, names, --env, -n 0 ...
    ├── NotFoundError                exit 3   unknown instance, task, batch or session
    │   └── SessionNotFound                     no such session on that server (.session_id)
    ├── ConflictError                exit 4   duplicate name, port in use, range exhausted,
    │                                          instance already stopped/running
    ├── BinaryError                  exit 5   opencode missing, too old, unknown line,
    │                                          install failed
    ├── StartError                   exit 6   a server exited or never got healthy
    ├── StateError                   exit 7   OCM_HOME unwritable, registry corrupt or locked
    └── ServerError                  exit 8   an OpenCode server answered badly or not at all
        ├── ServerUnreachable                   could not connect, or the connection broke
        │   ├── ServerTimeout                   no answer within the deadline (.seconds)
        │   └── TurnLost                        the server running a turn is gone, the turn too
        └── ServerRefused                       answered with an HTTP error (.status_code)

A task's outcome is not an error: `ocm run` and `ocm wait` exit with its status, 0 completed,
10 failed, 11 timed_out, 12 aborted (or cancelled), 13 budget_exceeded (stopped by its
--max-cost / --max-tokens); README's table lists every code.

`SessionNotFound` is raised in one place: the client, when the server answers a session
operation with "not found".
"""

from __future__ import annotations


class OcmError(Exception):
    """Base of every error opencode-manager raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, instance: str | None = None) -> None:
        super().__init__(message)
        self.instance = instance

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class UsageError(OcmError):
    """The caller asked for something malformed (bad port, bad name, bad option value)."""

    exit_code = 2


class NotFoundError(OcmError):
    """A reference (name, port or URL) matches no known instance."""

    exit_code = 3


class SessionNotFound(NotFoundError):
    """The server holds no session with this id (deleted, or never there)."""

    def __init__(self, message: str, *, session_id: str, instance: str | None = None) -> None:
        super().__init__(message, instance=instance)
        self.session_id = session_id


class ConflictError(OcmError):
    """The request clashes with the current state (duplicate name, port in use, ...)."""

    exit_code = 4


class BinaryError(OcmError):
    """The opencode binary is missing, unusable, too old, of no line ocm speaks (a 3.x), or
    could not be installed."""

    exit_code = 5


class StartError(OcmError):
    """A server failed to start: it exited early or never became healthy."""

    exit_code = 6

    def __init__(
        self, message: str, *, instance: str | None = None, log_tail: list[str] | None = None
    ) -> None:
        super().__init__(message, instance=instance)
        self.log_tail = log_tail or []


class Interrupted(OcmError):
    """Stopped on request (Ctrl-C) before it finished; what it had done was rolled back."""

    exit_code = 130


class StateError(OcmError):
    """Local state is unusable: OCM_HOME not writable, registry corrupt, lock timeout."""

    exit_code = 7


class ServerError(OcmError):
    """An OpenCode server did not answer, or answered with an error."""

    exit_code = 8

    def __init__(
        self, message: str, *, instance: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message, instance=instance)
        self.status_code = status_code


class ServerUnreachable(ServerError):
    """No answer: connection refused or reset, or no response before the deadline."""

    def __init__(self, message: str, *, instance: str | None = None) -> None:
        super().__init__(message, instance=instance, status_code=None)


class ServerTimeout(ServerUnreachable):
    """The request went out and no answer came within `seconds`: the server may still have
    taken it (a prompt is then looked up by its message id, never simply sent again)."""

    def __init__(self, message: str, *, instance: str | None = None, seconds: float) -> None:
        super().__init__(message, instance=instance)
        self.seconds = seconds


class TurnLost(ServerUnreachable):
    """The server process that took a task's prompt is gone (crashed, restarted, recycled)
    and its turn with it: a batch runs the task again; nothing else may send it again."""


class ServerRefused(ServerError):
    """The server answered, with an HTTP error (`status_code`) or something that is not the
    API (its web page, invalid JSON)."""

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        instance: str | None = None,
        status_code: int,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, instance=instance, status_code=status_code)
        self.detail = detail  # the server's own one-line reason, when it gave one


__all__ = [
    "BinaryError",
    "ConflictError",
    "Interrupted",
    "NotFoundError",
    "OcmError",
    "ServerError",
    "ServerRefused",
    "ServerTimeout",
    "ServerUnreachable",
    "SessionNotFound",
    "StartError",
    "StateError",
    "UsageError",
]
