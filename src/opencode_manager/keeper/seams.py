"""What the keeper touches outside itself, as constructor arguments (its seams).

* `Spawner` starts one run of the server and returns a `Server` (pipes, wait, terminate,
  samples);
* `Probe` makes the keeper's HTTP calls (the health check of the server's line, busy
  sessions, dispose, the warm-up's calls);
* `Host` is the keeper's own process: orphans re-parented to it (it is a child subreaper),
  zombies to reap; other instances' keepers re-parented to it are not its orphans;
* `Clock` tells the time.

The real ones are below. Unit tests pass fakes (`opencode_manager.testing`) and replay a
supervision history (crashes, wedges, memory growth, stop requests) in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any, Protocol

import psutil

from .. import process
from ..client import healthcheck
from ..client.endpoint import Endpoint
from ..client.readiness import Verdict
from ..deadline import within
from ..instances.launch import MARK_VARIABLE
from ..lines import Line
from ..models import SERVER_CMD, ProcessIdentity
from ..process import Termination


class Server(Protocol):
    """One run of `opencode serve`."""

    pid: int
    identity: ProcessIdentity | None
    stdout: asyncio.StreamReader | None
    stderr: asyncio.StreamReader | None

    @property
    def returncode(self) -> int | None: ...
    async def wait(self) -> int: ...
    async def terminate(self, timeout: float, extra: Sequence[psutil.Process] = ()) -> Termination:
        """SIGTERM its group and tree (and `extra`), wait up to `timeout`, then SIGKILL."""
        ...

    def sample(self) -> tuple[float, int] | None:
        """(CPU percent since the last sample, RSS bytes) of the server process."""
        ...

    def tree_rss(self) -> int:
        """RSS of the server and all its descendants."""
        ...

    def cpu_seconds(self) -> float | None:
        """CPU seconds the server has used (with its ended children), or None when unknown:
        what the warm-up cost."""
        ...


class Spawner(Protocol):
    async def spawn(self, argv: list[str], *, env: dict[str, str], cwd: str) -> Server: ...


class Probe(Protocol):
    async def check(self, endpoint: Endpoint, *, timeout: float, expected: Line | None) -> Verdict:
        """The health check of the server's line (client/readiness.py), or ServerError when
        nothing answers."""
        ...

    async def busy(
        self, endpoint: Endpoint, directory: str, *, timeout: float
    ) -> dict[str, Any]: ...
    async def dispose(self, endpoint: Endpoint, *, timeout: float) -> None: ...
    async def call(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        *,
        timeout: float,
        body: object = None,
        keep: bool = True,
    ) -> Any:
        """A call of the warm-up (warmup.py): its JSON answer (None when not `keep`), or
        ServerError."""
        ...


class Host(Protocol):
    def become_subreaper(self) -> bool: ...
    def orphans(self, server_pid: int | None) -> list[psutil.Process]: ...
    def reap_zombies(self, server_pid: int | None) -> None: ...


class Clock(Protocol):
    def time(self) -> float: ...
    def monotonic(self) -> float: ...


# -- the real ones -------------------------------------------------------------------------------
class ProcessServer:
    """A server started with asyncio's subprocess support; `spare`: the trees in it that are
    not its own (process.spared), left alone when it is ended."""

    def __init__(
        self, proc: asyncio.subprocess.Process, spare: process.Spare = process.is_keeper
    ) -> None:
        self._proc = proc
        self._spare = spare
        self.pid = proc.pid
        self.identity = process.identity_with(proc.pid, SERVER_CMD)
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self._sampled: psutil.Process | None = None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        return await self._proc.wait()

    async def terminate(self, timeout: float, extra: Sequence[psutil.Process] = ()) -> Termination:
        result = Termination()
        root = process.verified(self.identity)
        if root is not None:
            result = await asyncio.to_thread(
                process.terminate_tree, root, timeout=timeout, extra=list(extra), spare=self._spare
            )
        elif extra:
            result = await asyncio.to_thread(
                process.terminate_tree,
                extra[0],
                timeout=timeout,
                extra=list(extra[1:]),
                spare=self._spare,
            )
        with contextlib.suppress(ProcessLookupError, asyncio.TimeoutError):
            await within(self._proc.wait(), 5.0)
        return result

    def sample(self) -> tuple[float, int] | None:
        if self._sampled is None:
            self._sampled = process.verified(self.identity)
            if self._sampled is not None:
                with contextlib.suppress(psutil.Error):
                    self._sampled.cpu_percent(None)  # the first reading only starts the clock
            return None
        try:
            with self._sampled.oneshot():
                return self._sampled.cpu_percent(None), int(self._sampled.memory_info().rss)
        except psutil.Error:
            return None

    def cpu_seconds(self) -> float | None:
        root = process.verified(self.identity)
        if root is None:
            return None
        try:
            times = root.cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system + times.children_user + times.children_system

    def tree_rss(self) -> int:
        root = process.verified(self.identity)
        if root is None:
            return 0
        return sum(_rss(p) for p in [root, *process.descendants(root)])


class SubprocessSpawner:
    async def spawn(self, argv: list[str], *, env: dict[str, str], cwd: str) -> Server:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own group: our signals reach MCP/LSP children
        )
        return ProcessServer(proc, process.spared(MARK_VARIABLE, env.get(MARK_VARIABLE)))


class HttpProbe:
    """Health, busy sessions, dispose and the warm-up's calls over h11 (the keeper loads no
    httpx)."""

    async def check(self, endpoint: Endpoint, *, timeout: float, expected: Line | None) -> Verdict:
        return await healthcheck.check(endpoint, timeout=timeout, expected=expected)

    async def busy(self, endpoint: Endpoint, directory: str, *, timeout: float) -> dict[str, Any]:
        return await healthcheck.busy_sessions(endpoint, directory, timeout=timeout)

    async def dispose(self, endpoint: Endpoint, *, timeout: float) -> None:
        await healthcheck.dispose(endpoint, timeout=timeout)

    async def call(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        *,
        timeout: float,
        body: object = None,
        keep: bool = True,
    ) -> Any:
        # Not kept: read to the end and dropped (the catalogue's megabytes would stay in
        # the heap).
        return await healthcheck.call(
            endpoint, method, target, timeout=timeout, discard=not keep, body=body
        )


class OwnProcess:
    """The keeper's own process: a child subreaper that ends and reaps what is re-parented.

    Being the nearest subreaper, it also receives other instances' keepers: an agent's
    `ocm start b` (or `ocm mcp` calling instances_start) double-forks b's keeper, and Linux
    hands it to us. `spare` (process.spared) tells those trees apart, so they are never taken
    for orphans of ours (and never ended with our server)."""

    def __init__(self, spare: process.Spare = process.is_keeper) -> None:
        self.spare = spare

    def become_subreaper(self) -> bool:
        return process.set_child_subreaper()

    def orphans(self, server_pid: int | None) -> list[psutil.Process]:
        """Our descendants outside the server's own tree and outside other instances' trees:
        orphans re-parented to us."""
        me = psutil.Process()

        def outside(proc: psutil.Process) -> bool:
            return proc.pid == server_pid or self.spare(proc)

        return process.descendants(me, spare=outside)

    def reap_zombies(self, server_pid: int | None) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children():
                if child.pid == server_pid:
                    continue  # asyncio reaps the server itself
                with contextlib.suppress(ChildProcessError, OSError, psutil.Error):
                    if child.status() == psutil.STATUS_ZOMBIE:
                        os.waitpid(child.pid, os.WNOHANG)


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0
