"""Which server process holds a task's prompt, and whether it is still there.

That is the one fact that says a turn is lost: the server process that took the prompt is
gone (crashed, restarted, recycled: its PID and start time no longer run, or the instance's
server is another process now). Timing alone never says so:

* a prompt just taken is stored before its turn starts: OpenCode 1.18.33 shows the user
  message with the session idle and no answer yet for a moment, seconds on a loaded
  machine (seen under load: a batch took that for a turn lost with its server and sent the
  prompt again, in a new session, and the model ran it twice);
* a server stopped (SIGSTOP, swap) or swamped still has the POSTs it was sent in its
  sockets, and takes them when it runs again, long after their client gave up.

While the process lives, the prompt stays where it is: followed, and sent again only with
its own message id into its own session (which 1.18.33 never runs twice: see
client/identifiers.py). When it is gone, the turn died with it.

On OpenCode 2.x a prompt taken but not delivered yet sits in the session's inbox, which
outlives the process: still parked there, it is not lost with its process (the runner sends
it again with its id: TaskRunner._wake_parked).

A remote instance's server is not ours to see (`identify` is None): `gone` says None, and
callers fall back on a long grace of idleness (runner.TaskRunner.stall_grace).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import process
from ..models import InstanceRecord, ProcessIdentity

if TYPE_CHECKING:
    from ..instances.fleet import Fleet

#: The instance's server process as it is now (None while none runs).
Identify = Callable[[], ProcessIdentity | None]
Alive = Callable[[ProcessIdentity], bool]


def same_process(a: ProcessIdentity, b: ProcessIdentity) -> bool:
    return a.pid == b.pid and abs(a.create_time - b.create_time) < 0.05


@dataclass
class Custody:
    """The server process holding one task's prompt (`holder`), noted around each send."""

    identify: Identify | None = None  # None: nobody can tell (a remote instance)
    alive: Alive = process.is_alive
    holder: ProcessIdentity | None = None

    async def note(self) -> None:
        """Remember the process serving the instance now as the prompt's holder. Noted
        before and after a send: when they differ (a restart in between), the newer one
        is kept, so a prompt is never taken for lost while a process that may hold it runs
        (the older one is gone, and anything it held with it)."""
        if self.identify is None:
            return
        current = await asyncio.to_thread(self.identify)
        if current is not None:
            self.holder = current

    async def gone(self) -> bool | None:
        """True: the process that took the prompt is gone (and its turn with it); False: it
        still runs; None: unknown (a remote instance, or nothing was noted)."""
        if self.identify is None or self.holder is None:
            return None
        return await asyncio.to_thread(self._gone, self.holder)

    def _gone(self, holder: ProcessIdentity) -> bool:
        if not self.alive(holder):
            return True
        assert self.identify is not None
        current = self.identify()
        return current is not None and not same_process(current, holder)


def of_instance(fleet: Fleet, instance: InstanceRecord) -> Custody:
    """The custody of a prompt sent to one of the fleet's instances (nobody can tell for a
    remote one)."""
    if instance.spec.remote:
        return Custody()
    return Custody(functools.partial(fleet.serving, instance.name))
