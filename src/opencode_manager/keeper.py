"""The keeper: one small supervisor process per instance (in the spirit of runit's runsv).

`ocm start` launches ``python -m opencode_manager.keeper --home H NAME`` detached in its own
session. The keeper spawns ``opencode serve`` (stdin closed, own process group, password by
environment), copies its output into the instance log, reads the listening URL, waits for
``/global/health``, records everything in the registry, and then supervises: on SIGTERM it
stops the server gracefully and completely; if the server dies on its own it ends whatever the
server left behind and records the crash.

It is a child subreaper, so processes the server orphans (bash-tool commands run in their own
session) are re-parented to the keeper instead of init and can still be found and ended.

If the keeper itself is killed (-9), the server keeps running: it stays in the registry with
its PID and start time, `ocm ls` shows it as unsupervised, and `ocm stop` ends it directly.
An agent's work in flight is never lost because its supervisor died.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from . import launch, process
from .client import AsyncOpencodeClient, Endpoint
from .credentials import read_password
from .errors import OcmError, ServerError
from .models import InstanceRecord, State
from .registry import Registry
from .settings import Settings

START_TIMEOUT = 120.0
DISPOSE_TIMEOUT = 3.0
STOP_TIMEOUT = 10.0
LOG_TAIL = 20


class LogSink:
    """Appends the server's output and the keeper's own notes to the instance log."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Open for the keeper's whole life; closed in close().
        self._file = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
        self.tail: list[str] = []

    def server_line(self, line: str) -> None:
        self._file.write(line if line.endswith("\n") else line + "\n")
        self.tail.append(line.rstrip("\n"))
        del self.tail[:-LOG_TAIL]

    def note(self, message: str, level: str = "INFO") -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        self._file.write(f"timestamp={stamp}Z level={level} source=ocm message={message!r}\n")

    def close(self) -> None:
        self._file.close()


class Keeper:
    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.registry = Registry(settings.registry_path)
        self.record: InstanceRecord = self.registry.get(name)
        self.spec = self.record.spec
        self.log = LogSink(settings.log_path(name))
        self.stop_requested = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self.url_found: asyncio.Future[str] | None = None

    # -- entry -----------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)  # no terminal to lose
        me = process.identity_of(os.getpid())
        assert me is not None
        self.registry.update(self.name, keeper_pid=me.pid, keeper_ctime=me.create_time)
        if not process.set_child_subreaper():
            self.log.note("could not become child subreaper; orphans may escape", "WARN")
        try:
            return await self._serve_once()
        finally:
            self.log.close()
            self.registry.update(self.name, keeper_pid=None, keeper_ctime=None)
            self.registry.close()

    async def _serve_once(self) -> int:
        password = read_password(self.settings, self.name) if self.spec.auth else None
        binary = self.spec.opencode or "opencode"
        port = self.record.port or self.spec.port
        instance_dir = self.settings.instance_dir(self.name)
        argv = [*launch.server_argv(binary, self.spec, port), "--print-logs"]
        env = launch.server_env(
            self.settings.environ, self.spec, password=password, instance_dir=instance_dir
        )
        self.log.note(f"starting {' '.join(argv)} in {self.spec.dir}")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.spec.dir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own group: our signals reach MCP/LSP children
            )
        except OSError as exc:
            return self._fail(f"could not run {binary}: {exc.strerror or exc}")
        server = process.identity_of(self.proc.pid)
        self.registry.update(
            self.name,
            server_pid=self.proc.pid,
            server_ctime=server.create_time if server else None,
            state=State.STARTING,
            error=None,
        )
        self.url_found = asyncio.get_running_loop().create_future()
        pumps = [
            asyncio.create_task(self._pump(self.proc.stdout, detect_url=True)),
            asyncio.create_task(self._pump(self.proc.stderr, detect_url=False)),
        ]
        try:
            url = await self._wait_listening()
            if url is None:
                return await self._start_failed(port, pumps)
            endpoint = Endpoint(url=url, password=password, name=self.name)
            version = await self._wait_healthy(endpoint)
            if version is None:
                return await self._start_failed(port, pumps)
            self.registry.update(
                self.name,
                state=State.RUNNING,
                url=url,
                port=launch.port_of(url),
                version=version,
                started_at=time.time(),
            )
            self.log.note(f"healthy at {url} (opencode {version})")
            return await self._supervise(endpoint, pumps)
        finally:
            for task in pumps:
                task.cancel()

    # -- phases ----------------------------------------------------------------------------
    async def _pump(self, stream: asyncio.StreamReader | None, *, detect_url: bool) -> None:
        if stream is None:
            return
        while True:
            raw = await stream.readline()
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace")
            self.log.server_line(line)
            if detect_url and self.url_found and not self.url_found.done():
                url = launch.parse_listening(line)
                if url:
                    self.url_found.set_result(url)

    async def _wait_listening(self) -> str | None:
        assert self.proc is not None
        assert self.url_found is not None
        exited = asyncio.create_task(self.proc.wait())
        stop = asyncio.create_task(self.stop_requested.wait())
        waiters: set[asyncio.Future[Any]] = {self.url_found, exited, stop}
        try:
            done, _ = await asyncio.wait(
                waiters,
                timeout=START_TIMEOUT,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            exited.cancel()
            stop.cancel()
        if self.url_found in done:
            return str(self.url_found.result())
        return None

    async def _wait_healthy(self, endpoint: Endpoint) -> str | None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        async with AsyncOpencodeClient(endpoint, timeout=2.0) as client:
            delay = 0.02
            while time.monotonic() < deadline and self.proc.returncode is None:
                if self.stop_requested.is_set():
                    return None
                with contextlib.suppress(ServerError):
                    data = await client.health()
                    if data.get("healthy"):
                        return str(data.get("version") or "")
                await asyncio.sleep(delay)  # poll interval while waiting for health
                delay = min(delay * 1.5, 0.25)
        return None

    async def _start_failed(self, port: int | None, pumps: list[asyncio.Task[None]]) -> int:
        assert self.proc is not None
        if self.stop_requested.is_set():
            await self._terminate()
            self._record_stopped()
            return 0
        if self.proc.returncode is None:
            await self._terminate()
            reason = f"not healthy within {START_TIMEOUT:.0f} s"
        else:
            # Let the pumps drain so the cause is in the tail.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pumps), timeout=2.0)
            reason = launch.explain_exit(self.log.tail, self.spec, port)
        return self._fail(reason)

    async def _supervise(self, endpoint: Endpoint, pumps: list[asyncio.Task[None]]) -> int:
        assert self.proc is not None
        exited = asyncio.create_task(self.proc.wait())
        stop = asyncio.create_task(self.stop_requested.wait())
        reaper = asyncio.create_task(self._reap_orphans())
        try:
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reaper.cancel()
        if self.stop_requested.is_set():
            exited.cancel()
            self.registry.update(self.name, state=State.STOPPING)
            await self._dispose(endpoint)
            await self._terminate()
            self._record_stopped()
            return 0
        stop.cancel()
        code = self.proc.returncode
        last_exit = _describe_exit(code)
        self.log.note(f"server exited on its own ({last_exit})", "ERROR")
        await self._end_orphans()
        self.registry.update(
            self.name,
            state=State.CRASHED,
            last_exit=last_exit,
            error=f"server exited unexpectedly ({last_exit})",
            stopped_at=time.time(),
            server_pid=None,
            server_ctime=None,
        )
        return 1

    # -- endings ---------------------------------------------------------------------------
    async def _dispose(self, endpoint: Endpoint) -> None:
        """Ask the server to end its tool processes and MCP/LSP servers (bounded)."""
        try:
            async with AsyncOpencodeClient(endpoint, timeout=DISPOSE_TIMEOUT) as client:
                await client.dispose()
        except OcmError as exc:
            self.log.note(f"dispose did not complete: {exc}", "WARN")

    async def _terminate(self) -> None:
        assert self.proc is not None
        root = process.verified(process.identity_of(self.proc.pid))
        if root is not None:
            result = await asyncio.to_thread(
                process.terminate_tree, root, timeout=STOP_TIMEOUT, extra=self._orphans()
            )
            if result.killed:
                self.log.note(
                    f"needed SIGKILL: {', '.join(result.killed_names)}", "WARN"
                )
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(self.proc.wait(), timeout=5.0)
        await self._end_orphans()

    def _orphans(self) -> list[psutil.Process]:
        """Our descendants other than the server's own tree: orphans re-parented to us."""
        me = psutil.Process()
        server_pid = self.proc.pid if self.proc else None
        return [p for p in process.descendants(me) if p.pid != server_pid]

    async def _end_orphans(self) -> None:
        for proc in self._orphans():
            await asyncio.to_thread(process.terminate_tree, proc, timeout=STOP_TIMEOUT)
        self._reap_zombies()

    def _reap_zombies(self) -> None:
        server_pid = self.proc.pid if self.proc else None
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children():
                if child.pid == server_pid:
                    continue  # asyncio reaps the server itself
                with contextlib.suppress(ChildProcessError, OSError, psutil.Error):
                    if child.status() == psutil.STATUS_ZOMBIE:
                        os.waitpid(child.pid, os.WNOHANG)

    async def _reap_orphans(self) -> None:
        while True:
            await asyncio.sleep(1.0)  # periodic housekeeping, not synchronisation
            self._reap_zombies()

    def _record_stopped(self) -> None:
        self.log.note("stopped")
        self.registry.update(
            self.name,
            state=State.STOPPED,
            stopped_at=time.time(),
            server_pid=None,
            server_ctime=None,
            last_exit="stopped",
        )

    def _fail(self, reason: str) -> int:
        self.log.note(f"start failed: {reason}", "ERROR")
        self.registry.update(
            self.name,
            state=State.CRASHED,
            error=reason,
            stopped_at=time.time(),
            server_pid=None,
            server_ctime=None,
            last_exit=_describe_exit(self.proc.returncode if self.proc else None),
        )
        return 1


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opencode_manager.keeper")
    parser.add_argument("--home", required=True)
    parser.add_argument("name")
    args = parser.parse_args(argv)
    settings = Settings.load(home=args.home)
    try:
        keeper = Keeper(settings, args.name)
    except OcmError as exc:
        print(f"keeper: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(keeper.run())


if __name__ == "__main__":
    sys.exit(main())
