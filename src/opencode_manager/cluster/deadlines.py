"""How long the driver waits for a host agent (pure).

Each deadline is what the agent's own work may take on its host, counted from what it is
asked to do (how many instances, their health and stop timeouts), plus one margin for the
call itself (`OCM_CLUSTER_CALL_TIMEOUT`, a setting: raise it for a loaded cluster). A fixed
deadline was too short for a busy host and needlessly long for one quick call; a deadline
that scales also lets the error say what was slow and how long it was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UsageError

CALL_VARIABLE = "OCM_CLUSTER_CALL_TIMEOUT"
DEFAULT_CALL = 30.0


@dataclass(frozen=True)
class Deadlines:
    #: A quick call (hello, logs, status), and the margin added to every longer one.
    call: float = DEFAULT_CALL
    #: The host's own guard beyond the health timeout (`lifecycle._await_started`).
    guard: float = 5.0
    #: One keeper launched on the host; they are launched one after another there.
    launch_each: float = 5.0
    #: One instance stopped on the host at worst is twice its stop timeout (the keeper's
    #: graceful stop, then ocm's own SIGTERM-to-SIGKILL) plus this (a dispose, the acks).
    stop_margin: float = 10.0
    #: The SIGTERM-to-SIGKILL timeout of what a failed start undoes (as `ocm stop`'s).
    undo_stop: float = 10.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Deadlines:
        raw = environ.get(CALL_VARIABLE)
        if not raw:
            return cls()
        try:
            call = float(raw)
        except ValueError:
            call = -1.0
        if not call > 0:
            raise UsageError(f"invalid {CALL_VARIABLE} {raw!r}: seconds above 0 expected")
        return cls(call=call)

    def start(self, health_timeout: float, count: int) -> float:
        """An agent starting `count` instances that each get `health_timeout` to answer."""
        return health_timeout + self.guard + count * self.launch_each + self.call

    def stop(self, stop_timeout: float, count: int) -> float:
        """An agent stopping `count` instances, one after another, each with `stop_timeout`
        between SIGTERM and SIGKILL."""
        return max(count, 1) * (2 * stop_timeout + self.stop_margin) + self.call

    def undo(self, count: int) -> float:
        """An agent undoing a start: the start it cancels ends (what it launched so far is
        stopped), then what is left of it is stopped."""
        return self.stop(self.undo_stop, count) + count * self.launch_each

    def restart(self, health_timeout: float, stop_timeout: float, count: int) -> float:
        return self.stop(stop_timeout, count) + self.start(health_timeout, count)
