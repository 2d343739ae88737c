"""The keeper: one small supervisor process per instance (in the spirit of runit's runsv).

`ocm start` launches ``python -m opencode_manager.keeper --home H NAME`` detached in its own
session. The keeper spawns ``opencode serve`` (stdin closed, own process group, password by
environment), copies its output into the instance log (rotated by size), reads the listening
URL, waits for ``/global/health``, records everything in the registry, and then supervises:

* liveness is HTTP: ``/global/health`` every ``health_interval`` with a deadline; three misses
  in a row (a wedged or SIGSTOPped server) and it is ended and restarted;
* ``max_memory`` / ``max_age`` recycle it gracefully (busy sessions get a grace period, then
  dispose, then stop);
* when it ends, the restart policy decides (supervision.py): backoff 100 ms x1.5 up to 15 s,
  reset after 30 s up, and `errored` past the flapping limit;
* on SIGTERM it stops the server gracefully and completely and exits.

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
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil

from .. import process
from ..client import healthcheck
from ..client.endpoint import Endpoint
from ..errors import OcmError, ServerError
from ..instances import launch, ports
from ..instances.credentials import read_password
from ..models import InstanceRecord, InstanceSpec, State
from ..registry import Registry
from ..settings import Settings
from .logsink import LogSink
from .policy import ExitKind, Limits, RestartPolicy, decide, next_consecutive

START_TIMEOUT = 120.0
DISPOSE_TIMEOUT = 3.0
STOP_TIMEOUT = 10.0


def limits_of(spec: InstanceSpec) -> Limits:
    return Limits(
        policy=RestartPolicy(spec.restart),
        max_restarts=spec.max_restarts,
        window=spec.restart_window,
        health_interval=spec.health_interval,
        health_timeout=min(3.0, max(1.0, spec.health_interval)),
        max_memory=spec.max_memory,
        max_age=spec.max_age,
    )


@dataclass
class Outcome:
    """How one run of the server ended."""

    kind: ExitKind | None  # None: stopped on request
    reason: str
    uptime: float = 0.0
    healthy_once: bool = False
    code: int | None = None


class Keeper:
    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.registry = Registry(settings.registry_path)
        self.record: InstanceRecord = self.registry.get(name)
        self.spec = self.record.spec
        self.limits = limits_of(self.spec)
        self.log = LogSink(
            settings.log_path(name), max_size=self.spec.log_max_size, keep=self.spec.log_keep
        )
        self.stop_requested = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self.url_found: asyncio.Future[str] | None = None
        self.password = read_password(settings, name) if self.spec.auth else None
        self._sampled: psutil.Process | None = None

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
            return await self._supervise_forever()
        finally:
            self.log.close()
            self.registry.update(self.name, keeper_pid=None, keeper_ctime=None)
            self.registry.close()

    async def _supervise_forever(self) -> int:
        restarts: list[float] = []
        consecutive = 0
        first = True
        while True:
            outcome = await self._run_server()
            if outcome.kind is None:
                self._record_stopped()
                return 0
            if first and not outcome.healthy_once:
                # The start `ocm start` is waiting for: fail fast with the cause.
                return self._fail(outcome.reason, outcome.code)
            first = False
            self.registry.add_event(
                self.name,
                outcome.kind.value if outcome.kind is not ExitKind.CLEAN else "exited",
                outcome.reason,
            )
            consecutive = next_consecutive(consecutive, outcome.uptime)
            now = time.time()
            decision = decide(
                self.limits,
                outcome.kind,
                consecutive=consecutive,
                recent_restarts=restarts,
                now=now,
            )
            last_exit = (
                _describe_exit(outcome.code) if outcome.code is not None else outcome.kind.value
            )
            if decision.errored:
                self.log.note(f"errored: {decision.errored}", "ERROR")
                self.registry.add_event(self.name, "errored", decision.errored)
                self.registry.update(
                    self.name,
                    state=State.ERRORED,
                    error=decision.errored,
                    last_exit=last_exit,
                    stopped_at=now,
                    server_pid=None,
                    server_ctime=None,
                )
                return 1
            if not decision.restart:
                state = State.STOPPED if outcome.kind is ExitKind.CLEAN else State.CRASHED
                self.registry.update(
                    self.name,
                    state=state,
                    error=outcome.reason,
                    last_exit=last_exit,
                    stopped_at=now,
                    server_pid=None,
                    server_ctime=None,
                )
                return 0 if outcome.kind is ExitKind.CLEAN else 1
            restarts.append(now)
            record = self.registry.get(self.name)
            self.registry.update(
                self.name,
                state=State.STARTING,
                restarts=record.restarts + 1,
                last_exit=last_exit,
                error=outcome.reason,
                server_pid=None,
                server_ctime=None,
            )
            self.log.note(f"restarting in {decision.delay:.2f} s ({outcome.reason})", "WARN")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), decision.delay)
            if self.stop_requested.is_set():
                self._record_stopped()
                return 0
            self.registry.add_event(self.name, "restarted", f"after {decision.delay:.2f} s backoff")

    # -- one run of the server -------------------------------------------------------------
    async def _run_server(self) -> Outcome:
        binary = self.spec.opencode or "opencode"
        # Keep the port across restarts so clients keep working; an explicit one always, an
        # automatic one while it is still free (else the server picks another).
        previous = self.registry.get(self.name).port
        port = self.spec.port
        if (
            port is None
            and previous
            and (self.spec.port_range is not None or ports.port_free(self.spec.hostname, previous))
        ):
            port = previous  # a --port-range port stays in its range, free or not
        instance_dir = self.settings.instance_dir(self.name)
        argv = [*launch.server_argv(binary, self.spec, port), "--print-logs"]
        env = launch.server_env(
            self.settings.environ, self.spec, password=self.password, instance_dir=instance_dir
        )
        self.log.note(f"starting {' '.join(argv)} in {self.spec.dir}")
        self.registry.add_event(self.name, "started", f"pid pending, port {port or 'auto'}")
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
            return Outcome(ExitKind.CRASHED, f"could not run {binary}: {exc.strerror or exc}")
        server = process.identity_of(self.proc.pid)
        self.registry.update(
            self.name,
            server_pid=self.proc.pid,
            server_ctime=server.create_time if server else None,
            state=State.STARTING,
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
            endpoint = Endpoint(url=url, password=self.password, name=self.name)
            version = await self._wait_healthy(endpoint)
            if version is None:
                return await self._start_failed(port, pumps)
            started = time.monotonic()
            self.registry.update(
                self.name,
                state=State.RUNNING,
                url=url,
                port=launch.port_of(url),
                version=version,
                started_at=time.time(),
                error=None,
            )
            self.registry.add_event(self.name, "healthy", f"{url} (opencode {version})")
            self.log.note(f"healthy at {url} (opencode {version})")
            outcome = await self._watch(endpoint, started)
            outcome.healthy_once = True
            outcome.uptime = time.monotonic() - started
            return outcome
        finally:
            for task in pumps:
                task.cancel()

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
                waiters, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
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
        delay = 0.02
        while time.monotonic() < deadline and self.proc.returncode is None:
            if self.stop_requested.is_set():
                return None
            with contextlib.suppress(ServerError):
                data = await healthcheck.health(endpoint, timeout=2.0)
                if data.get("healthy"):
                    return str(data.get("version") or "")
            await asyncio.sleep(delay)  # poll interval while waiting for health
            delay = min(delay * 1.5, 0.05)
        return None

    async def _start_failed(self, port: int | None, pumps: list[asyncio.Task[None]]) -> Outcome:
        assert self.proc is not None
        if self.stop_requested.is_set():
            await self._terminate()
            return Outcome(None, "stopped")
        if self.proc.returncode is None:
            await self._terminate()
            return Outcome(ExitKind.UNHEALTHY, f"not healthy within {START_TIMEOUT:.0f} s")
        with contextlib.suppress(asyncio.TimeoutError):  # let the pumps drain: the cause
            await asyncio.wait_for(asyncio.gather(*pumps), timeout=2.0)
        reason = launch.explain_exit(self.log.tail, self.spec, port)
        return Outcome(ExitKind.CRASHED, reason, code=self.proc.returncode)

    async def _watch(self, endpoint: Endpoint, started: float) -> Outcome:
        """Supervise a healthy server until it ends, must be recycled, or we are stopped."""
        assert self.proc is not None
        exited = asyncio.create_task(self.proc.wait())
        stop = asyncio.create_task(self.stop_requested.wait())
        misses = 0
        try:
            while True:
                done, _ = await asyncio.wait(
                    {exited, stop},
                    timeout=self.limits.health_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                self._reap_zombies()
                self._cap_opencode_log()
                if stop in done:
                    self.registry.update(self.name, state=State.STOPPING)
                    await self._dispose(endpoint)
                    await self._terminate()
                    return Outcome(None, "stopped")
                if exited in done:
                    code = self.proc.returncode
                    await self._end_orphans()
                    kind = ExitKind.CLEAN if code == 0 else ExitKind.CRASHED
                    self.log.note(
                        f"server exited on its own ({_describe_exit(code)})",
                        "ERROR" if code else "WARN",
                    )
                    return Outcome(kind, f"server exited ({_describe_exit(code)})", code=code)
                try:
                    await healthcheck.health(endpoint, timeout=self.limits.health_timeout)
                    misses = 0
                    self._sample()
                except ServerError as exc:
                    misses += 1
                    self.log.note(
                        f"health check missed ({misses}/{self.limits.health_misses}): {exc}", "WARN"
                    )
                    if misses == 1:
                        self.registry.add_event(self.name, "unhealthy", str(exc))
                    if misses >= self.limits.health_misses:
                        await self._terminate(timeout=0.5)  # wedged: TERM is moot
                        return Outcome(
                            ExitKind.UNHEALTHY, f"no answer to {misses} health checks in a row"
                        )
                    continue
                reason = self._recycle_reason(time.monotonic() - started)
                if reason:
                    await self._recycle(endpoint, reason)
                    return Outcome(ExitKind.RECYCLED, reason)
        finally:
            exited.cancel()
            stop.cancel()

    def _sample(self) -> None:
        """Record the server's CPU and memory, so `ocm ls` can show them without measuring."""
        if self.proc is None:
            return
        if self._sampled is None or self._sampled.pid != self.proc.pid:
            self._sampled = process.verified(process.identity_of(self.proc.pid))
            if self._sampled is not None:
                with contextlib.suppress(psutil.Error):
                    self._sampled.cpu_percent(None)  # the first reading only starts the clock
            return
        try:
            with self._sampled.oneshot():
                cpu = self._sampled.cpu_percent(None)
                rss = self._sampled.memory_info().rss
        except psutil.Error:
            return
        self.registry.update(self.name, cpu_percent=cpu, rss_bytes=rss, sampled_at=time.time())

    def _recycle_reason(self, uptime: float) -> str | None:
        if self.limits.max_age is not None and uptime >= self.limits.max_age:
            return f"recycled: up {uptime:.0f} s (--max-age {self.limits.max_age:g} s)"
        if self.limits.max_memory is not None and self.proc is not None:
            root = process.verified(process.identity_of(self.proc.pid))
            if root is not None:
                rss = sum(_rss(p) for p in [root, *process.descendants(root)])
                if rss > self.limits.max_memory:
                    return (
                        f"recycled: {rss // (1024 * 1024)} MiB used "
                        f"(--max-memory {self.limits.max_memory // (1024 * 1024)} MiB)"
                    )
        return None

    async def _recycle(self, endpoint: Endpoint, reason: str) -> None:
        """Let a turn in progress finish (up to the grace period), then stop gracefully."""
        self.log.note(reason, "WARN")
        deadline = time.monotonic() + self.limits.recycle_grace
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            try:
                busy = await healthcheck.busy_sessions(endpoint, self.spec.dir, timeout=5.0)
            except ServerError:
                break
            if not busy:
                break
            await asyncio.sleep(1.0)  # waiting for busy sessions, with a deadline
        await self._dispose(endpoint)
        await self._terminate()

    # -- endings ---------------------------------------------------------------------------
    async def _dispose(self, endpoint: Endpoint) -> None:
        """Ask the server to end its tool processes and MCP/LSP servers (bounded)."""
        try:
            await healthcheck.dispose(endpoint, timeout=DISPOSE_TIMEOUT)
        except OcmError as exc:
            self.log.note(f"dispose did not complete: {exc}", "WARN")

    async def _terminate(self, timeout: float = STOP_TIMEOUT) -> None:
        assert self.proc is not None
        root = process.verified(process.identity_of(self.proc.pid))
        if root is not None:
            result = await asyncio.to_thread(
                process.terminate_tree, root, timeout=timeout, extra=self._orphans()
            )
            if result.killed:
                self.log.note(f"needed SIGKILL: {', '.join(result.killed_names)}", "WARN")
        with contextlib.suppress(ProcessLookupError, asyncio.TimeoutError):
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

    def _cap_opencode_log(self) -> None:
        """OpenCode's own log (private data dir) never rotates: copy it aside and truncate.

        OpenCode opens it with O_APPEND, so truncating in place is safe for its writer.
        """
        if self.spec.shared_data:
            return
        log = self.settings.instance_dir(self.name) / "data" / "opencode" / "log" / "opencode.log"
        try:
            if log.stat().st_size < self.spec.log_max_size:
                return
            shutil.copyfile(log, log.with_name("opencode.log.1"))
            os.truncate(log, 0)
        except OSError:
            return

    def _record_stopped(self) -> None:
        self.log.note("stopped")
        self.registry.add_event(self.name, "stopped", "on request")
        self.registry.update(
            self.name,
            state=State.STOPPED,
            stopped_at=time.time(),
            server_pid=None,
            server_ctime=None,
            last_exit="stopped",
        )

    def _fail(self, reason: str, code: int | None) -> int:
        self.log.note(f"start failed: {reason}", "ERROR")
        self.registry.add_event(self.name, "crashed", f"start failed: {reason}")
        self.registry.update(
            self.name,
            state=State.CRASHED,
            error=reason,
            stopped_at=time.time(),
            server_pid=None,
            server_ctime=None,
            last_exit=_describe_exit(code),
        )
        return 1


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0


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
