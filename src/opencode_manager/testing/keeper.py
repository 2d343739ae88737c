"""Fakes for the keeper's seams: replay a supervision history without any process.

    spawner = FakeSpawner()
    keeper = Keeper(settings, record, registry, spawner=spawner, probe=FakeProbe(spawner),
                    host=FakeHost(), limits=Limits(health_interval=0.01), capture_stdio=False)
    task = asyncio.create_task(keeper.run(signals=False))
    await spawner.started(1)          # the first server is up
    spawner.servers[-1].exit(1)       # it crashes: the keeper restarts it after its backoff

Each `FakeServer` prints OpenCode's "listening on" line, answers health checks through
`FakeProbe` until it is made to `wedge()`, reports the memory it is told to, and exits when it
is told to or terminated (`ignores_term` makes SIGTERM moot, as for a wedged server).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import psutil

from ..client.endpoint import Endpoint
from ..client.readiness import Phase, Verdict
from ..errors import ServerUnreachable
from ..lines import Line, known_line
from ..models import ProcessIdentity
from ..process import Termination

_pids = itertools.count(4_000_000)  # above any real PID: nothing real is ever touched
_ports = itertools.count(47_000)


class FakeServer:
    """One fake run of `opencode serve`."""

    def __init__(self, argv: list[str], env: dict[str, str], *, listen: bool = True) -> None:
        self.argv = argv
        self.env = env
        self.pid = next(_pids)
        self.identity: ProcessIdentity | None = None
        self.port = next(_ports)
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout: asyncio.StreamReader | None = asyncio.StreamReader()
        self.stderr: asyncio.StreamReader | None = asyncio.StreamReader()
        self.wedged = False
        self.healthy = True
        self.ignores_term = False
        self.rss = 100 * 1024 * 1024
        self.cpu = 1.0
        self.cpu_used = 0.0  # CPU seconds so far (what `cpu_seconds` reports)
        self.terminations: list[float] = []  # the timeout of each terminate() call
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if listen:
            self.say(f"opencode server listening on {self.url}")

    # -- what a test does to it ------------------------------------------------------------
    def say(self, line: str, *, stderr: bool = False) -> None:
        stream = self.stderr if stderr else self.stdout
        assert stream is not None
        stream.feed_data((line + "\n").encode())

    def exit(self, code: int) -> None:
        """The process ends on its own with this code (negative: killed by that signal)."""
        if not self._exit.done():
            for stream in (self.stdout, self.stderr):
                assert stream is not None
                stream.feed_eof()
            self._exit.set_result(code)

    def wedge(self) -> None:
        """Stops answering (SIGSTOP, a deadlock): health checks time out."""
        self.wedged = True

    # -- the Server protocol ---------------------------------------------------------------
    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    async def terminate(self, timeout: float, extra: Sequence[psutil.Process] = ()) -> Termination:
        self.terminations.append(timeout)
        if self.returncode is not None:
            return Termination()
        if self.ignores_term or self.wedged:
            self.exit(-9)
            return Termination(signalled=1, killed=1, killed_names=[f"{self.pid} opencode"])
        self.exit(-15)
        return Termination(signalled=1)

    def sample(self) -> tuple[float, int] | None:
        return self.cpu, self.rss

    def tree_rss(self) -> int:
        return self.rss

    def cpu_seconds(self) -> float | None:
        return self.cpu_used


class FakeSpawner:
    """Hands out `FakeServer`s; `fail_next` makes the next spawns fail to start the binary,
    `silent_next` makes the next servers never print their URL."""

    def __init__(self) -> None:
        self.servers: list[FakeServer] = []
        self.fail_next = 0
        self.silent_next = 0
        self._spawned = asyncio.Condition()

    async def spawn(self, argv: list[str], *, env: dict[str, str], cwd: str) -> FakeServer:
        if self.fail_next:
            self.fail_next -= 1
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        listen = not self.silent_next
        self.silent_next = max(0, self.silent_next - 1)
        server = FakeServer(argv, env, listen=listen)
        async with self._spawned:
            self.servers.append(server)
            self._spawned.notify_all()
        return server

    async def started(self, count: int, timeout: float = 5.0) -> FakeServer:
        """Wait until `count` servers were spawned; return the last one."""

        async def enough() -> None:
            async with self._spawned:
                await self._spawned.wait_for(lambda: len(self.servers) >= count)

        await asyncio.wait_for(enough(), timeout)
        return self.servers[-1]


class FakeProbe:
    """Health checks answered by the fake servers themselves, as the line of `version`
    would; `script` holds verdicts to give first (a 2.x server's 503s, say), `answer` one to
    give for good (a server that never answers the API)."""

    def __init__(self, spawner: FakeSpawner, version: str = "1.18.33") -> None:
        self.spawner = spawner
        self.version = version
        self.script: list[Verdict] = []
        self.answer: Verdict | None = None
        self.expected: list[Line | None] = []  # the line each check was told to expect
        self.disposed: list[str] = []
        self.busy_sessions: dict[str, Any] = {}
        self.warmed: list[str] = []  # the warm-up's request targets, in order
        self.calls: list[tuple[str, str, object]] = []  # (method, target, body), in order
        self._sessions = 0

    def _server(self, endpoint: Endpoint) -> FakeServer:
        for server in self.spawner.servers:
            if server.url == endpoint.base_url and server.returncode is None:
                if server.wedged:
                    break
                return server
        raise ServerUnreachable(f"{endpoint.name} is unreachable (fake)", instance=endpoint.name)

    async def check(self, endpoint: Endpoint, *, timeout: float, expected: Line | None) -> Verdict:
        server = self._server(endpoint)
        self.expected.append(expected)
        if self.script:
            return self.script.pop(0)
        if self.answer is not None:
            return self.answer
        line = known_line(self.version)
        if not server.healthy:
            return Verdict(Phase.STARTING, line, self.version, "not healthy (fake)")
        return Verdict(Phase.READY, line, self.version)

    async def busy(self, endpoint: Endpoint, directory: str, *, timeout: float) -> dict[str, Any]:
        self._server(endpoint)
        return dict(self.busy_sessions)

    async def dispose(self, endpoint: Endpoint, *, timeout: float) -> None:
        self.disposed.append(self._server(endpoint).url)

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
        """The warm-up's calls, answered as the line would: a session made, a turn that
        went well, a session deleted."""
        self._server(endpoint).cpu_used += 0.25  # what each call costs the server
        self.warmed.append(target)
        self.calls.append((method, target, body))
        if method == "POST" and target.split("?")[0] in ("/session", "/api/session"):
            self._sessions += 1
            made = {"id": f"ses_fake{self._sessions}"}
            return {"data": made} if target.startswith("/api/") else made
        if target.startswith("/api/session/") and method == "GET":
            return {"data": {"outcome": "succeeded"}}
        if target.endswith("/message"):
            return {"info": {"finish": "stop"}, "parts": []}
        return {} if keep else None


class FakeHost:
    """A keeper process with no orphans and nothing to reap."""

    def become_subreaper(self) -> bool:
        return True

    def orphans(self, server_pid: int | None) -> list[psutil.Process]:
        return []

    def reap_zombies(self, server_pid: int | None) -> None:
        return None
