"""The keeper: one small supervisor process per instance (in the spirit of runit's runsv).

`ocm start` launches ``python -m opencode_manager.keeper --home H --detach NAME``; it forks
itself away, so it is nobody's child. The keeper spawns ``opencode serve`` (stdin closed, own
process group, password by environment), copies its output into the instance log (rotated by
size), reads the listening URL, waits for its line's health check (``/global/health`` on 1.x,
``/api/info`` on 2.x: client/readiness.py), warms the server up for its first task
(warmup.py: two turns answered by the keeper's own model, warmmodel.py), records everything
in the registry, and then supervises in a reconcile loop:

* liveness is HTTP: that health check every ``health_interval`` with a deadline; three misses
  in a row (a wedged or SIGSTOPped server) and it is ended and restarted;
* ``max_memory`` / ``max_age`` recycle it gracefully (busy sessions get a grace period, then
  dispose, then stop);
* when it ends, the restart policy decides (supervision.py): backoff 100 ms x1.5 up to 15 s,
  reset after 30 s up, and `errored` past the flapping limit;
* the desired state in its registry row is what it acts on: a stop request (with its timeout)
  is read there; SIGTERM only wakes it (and stops it when the registry cannot be read);
* every interval it writes a heartbeat (with CPU and memory samples) and the orphans it has
  adopted, so `ocm ls` can tell a frozen keeper and `ocm stop` can end everything without it;
* on 1.x it warms the directory again before OpenCode drops its runner (60 idle minutes).

It never gives up on its server because of the registry or the disk: registry writes go through
the `Ledger` (kept and retried), log writes through the `LogSink` (dropped and counted), and the
pipes are always drained. Its own crash is written where `ocm status` shows it. When the
registry cannot take its last writes (a full disk), it stays after its server has ended until
they land (up to `EXIT_LINGER`), so a stop made during the outage is recorded once there is room.
When the registry file is replaced (`ocm restore`), it writes its whole row into the new one
(row.py), inserting it if that file does not have it.

It is a child subreaper, so processes the server orphans (bash-tool commands run in their own
session) are re-parented to the keeper instead of init and can still be found and ended. So
are other instances' keepers that an agent of ours started (`ocm start` in a bash tool, ocm's
MCP server): those, and everything under them, are never taken for orphans (process.spared).
If the keeper itself is killed (-9), the server keeps running: an agent's work in flight is
never lost because its supervisor died; `ocm stop` ends it directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .. import process
from ..client import readiness
from ..client.endpoint import Endpoint
from ..client.readiness import Phase, Verdict
from ..deadline import within
from ..errors import OcmError, ServerError
from ..instances import launch, ports, warmprovider
from ..instances.credentials import read_password
from ..lines import Line, known_line
from ..models import (
    KEEPER_CMD,
    DesiredState,
    EventKind,
    InstanceRecord,
    InstanceSpec,
    ProcessIdentity,
    State,
)
from ..registry import Registry
from ..settings import Settings
from ..supervision import DEFAULTS, ExitKind, Limits, decide, next_consecutive
from . import row, warmup
from .ledger import Ledger
from .logsink import LogSink
from .seams import (
    Clock,
    Host,
    HttpProbe,
    OwnProcess,
    Probe,
    Server,
    Spawner,
    SubprocessSpawner,
    SystemClock,
)
from .warmmodel import WarmupModel
from .warmup import Warmup, warm_up

START_TIMEOUT = 120.0
DISPOSE_TIMEOUT = 3.0
STOP_TIMEOUT = 10.0
WEDGED_STOP_TIMEOUT = 0.5  # a server that does not answer cannot act on SIGTERM either
REGISTRY_TIMEOUT = 0.5  # the keeper never waits long on a locked registry: it retries later
EXIT_SETTLE = 10.0  # at exit, how long to try to record the final state before saying so
EXIT_LINGER = 24 * 3600.0  # and then how long to stay, waiting for room to record it
READ_CHUNK = 65536
MAX_LINE = 1 << 20  # longer lines are cut (the pipe is drained whatever comes)
RECOVERED = "answering again"  # the detail of a healthy event after missed checks
#: 2.x answers 503 with `retry-after: 1` while it boots, and is ready at any moment: ask
#: again after its retry-after, but no later than this (a start would wait up to 1 s more).
RETRY_AFTER_CAP = 0.25
#: A server whose answers are no OpenCode API (HTML on both lines' routes, 401) this long in
#: a row fails its start with that reason instead of waiting out the start timeout.
NOT_API_GRACE = 10.0
SCRATCH = "warm-up"  # the warm-up's throw-away directory, in the instance's own dir


def limits_of(spec: InstanceSpec) -> Limits:
    """The spec's supervision; the rest (backoff, misses, grace) is everyone's `DEFAULTS`.
    (The log's rotation the keeper takes from the spec itself.)"""
    return dataclasses.replace(
        DEFAULTS,
        policy=spec.restart,
        max_restarts=spec.max_restarts,
        window=spec.restart_window,
        health_interval=spec.health_interval,
        health_timeout=min(DEFAULTS.health_timeout, max(1.0, spec.health_interval)),
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
    port_taken: bool = False  # a reused automatic port was taken meanwhile: pick another


class Keeper:
    def __init__(
        self,
        settings: Settings,
        record: InstanceRecord,
        registry: Registry,
        *,
        spawner: Spawner | None = None,
        probe: Probe | None = None,
        host: Host | None = None,
        clock: Clock | None = None,
        limits: Limits | None = None,
        capture_stdio: bool = True,
    ) -> None:
        self.settings = settings
        self.name = record.name
        self.record = record
        self.spec = record.spec
        self.registry = registry
        self.spawner = spawner or SubprocessSpawner()
        self.probe = probe or HttpProbe()
        mark = launch.mark_value(self.name, record.launch_token) if record.launch_token else None
        # Another instance's tree under us (its keeper was re-parented to us) is never ours.
        self.spare = process.spared(launch.MARK_VARIABLE, mark)
        self.host = host or OwnProcess(self.spare)
        self.clock = clock or SystemClock()
        self.limits = limits or limits_of(self.spec)
        self.start_timeout = record.start_timeout or START_TIMEOUT
        self.stop_timeout = STOP_TIMEOUT
        self.password = read_password(settings, self.name) if self.spec.auth else None
        self.log = LogSink(
            settings.log_path(self.name),
            max_size=self.spec.log_max_size,
            keep=self.spec.log_keep,
            on_trouble=self._log_trouble,
            capture_stdio=capture_stdio,
            secrets=(self.password,) if self.password else (),
        )
        self.ledger = Ledger(
            registry,
            on_trouble=self._registry_trouble,
            on_replaced=self._registry_replaced,
            clock=self.clock.monotonic,
        )
        self.row = row.initial(record)  # what the keeper knows its row holds (or should)
        self._dropped_said = 0
        self.stop_requested = asyncio.Event()
        self.wake = asyncio.Event()
        self.server: Server | None = None
        self.url_found: asyncio.Future[str] | None = None
        self.port = record.port
        # The line of the binary `ocm start` found (its version is in the row); the server's
        # health check confirms it, and the keeper speaks that line's few routes.
        self.expected: Line | None = known_line(record.version)
        self.line: Line | None = self.expected
        self._not_ready: str | None = None  # why the last start gave up waiting
        self._adopted: list[ProcessIdentity] = []
        self._problems: dict[str, str] = {}
        # The warm-up (warmup.py): on unless `--no-warm` or a budget of 0; its model is
        # served here (warmmodel.py) for the keeper's life, from the first spawn on.
        self.warm = self.spec.warm and settings.warmup_timeout > 0
        self.model: WarmupModel | None = None
        self._provided: str | None = None  # the layer pinning `model`, when the provider is in
        self._last_use = 0.0  # monotonic: the last turn in the directory (warm-up or seen)
        self.rewarm_after = warmup.REWARM_AFTER

    @classmethod
    def load(cls, settings: Settings, name: str, **seams: Any) -> Keeper:
        registry = Registry(settings.registry_path, timeout=REGISTRY_TIMEOUT)
        return cls(settings, registry.get(name), registry, **seams)

    # -- entry -----------------------------------------------------------------------------
    async def run(self, *, signals: bool = True) -> int:
        """Supervise until stopped; the exit code of the keeper process."""
        if signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGUSR1, self.wake.set)  # re-read the desired state
            loop.add_signal_handler(signal.SIGHUP, lambda: None)  # no terminal to lose
        me = process.identity_with(os.getpid(), KEEPER_CMD)
        if me is not None:
            self._write(Registry.keeper_started, self.name, me)
        if not self.host.become_subreaper():
            self.log.note("could not become child subreaper; orphans may escape", "WARN")
        try:
            await self._read_desired()  # a stop may have been asked before we were up
            await self._start_model()
            return await self._supervise_forever()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            problem = f"keeper crashed: {exc.__class__.__name__}: {exc}"
            self.log.note(problem + "\n" + traceback.format_exc(), "ERROR")
            self._write(Registry.keeper_problem, self.name, problem)
            self._event(EventKind.KEEPER_ERROR, problem)
            if self.server is not None and self.server.returncode is None:
                self.log.note("the server is left running; `ocm stop` ends it", "WARN")
            return 2
        finally:
            if self.model is not None:
                await self.model.close()
            self._write(Registry.keeper_ended, self.name)
            await self._settle()
            self.log.close()
            self.registry.close()

    async def _settle(self) -> None:
        """Record how this instance ended before going: a full disk must not lose a stop."""
        if await self.ledger.settle(self.clock.monotonic() + EXIT_SETTLE):
            return
        self.log.note(
            f"the registry cannot be written ({self.ledger.last_error}); staying up to "
            f"{EXIT_LINGER / 3600:g} h to record how {self.name} ended",
            "WARN",
        )
        if await self.ledger.settle(self.clock.monotonic() + EXIT_LINGER):
            self.log.note("recorded; the keeper ends")

    def request_stop(self) -> None:
        """What SIGTERM does: stop (with the row's timeout when a stop was requested there)."""
        self.stop_requested.set()
        self.wake.set()

    async def _read_desired(self) -> None:
        """Act on the desired state in our row (a stop request and its timeout)."""
        record = await self.ledger.read(lambda r: r.get(self.name))
        if record is None:
            return  # unreadable: supervise from memory; SIGTERM still stops us
        if record.desired is DesiredState.STOPPED:
            self.stop_timeout = record.stop_timeout or STOP_TIMEOUT
            self.stop_requested.set()

    async def _supervise_forever(self) -> int:
        restarts: list[float] = []
        consecutive = 0
        first = True
        while True:
            if self.stop_requested.is_set():
                self._record_stopped()
                return 0
            outcome = await self._run_server()
            if outcome.port_taken:
                self.log.note(f"port {self.port} was taken meanwhile; the server picks another")
                self.port = None
                continue
            if outcome.kind is None:
                self._record_stopped()
                return 0
            if first and not outcome.healthy_once:
                # The start `ocm start` is waiting for: fail fast with the cause.
                return self._fail(outcome.reason, outcome.code)
            first = False
            kind = (
                EventKind.EXITED
                if outcome.kind is ExitKind.CLEAN
                else EventKind(outcome.kind.value)
            )
            self._event(kind, outcome.reason)
            consecutive = next_consecutive(consecutive, outcome.uptime, self.limits)
            now = self.clock.time()
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
                errored = decision.errored
                self.log.note(f"errored: {errored}", "ERROR")
                self._event(EventKind.ERRORED, errored)
                self._write(
                    Registry.mark_ended,
                    self.name,
                    State.ERRORED,
                    error=errored,
                    last_exit=last_exit,
                )
                return 1
            if not decision.restart:
                state = State.STOPPED if outcome.kind is ExitKind.CLEAN else State.CRASHED
                reason = outcome.reason
                self._write(
                    Registry.mark_ended, self.name, state, error=reason, last_exit=last_exit
                )
                return 0 if outcome.kind is ExitKind.CLEAN else 1
            restarts.append(now)
            reason = outcome.reason
            self._write(Registry.mark_restarting, self.name, last_exit=last_exit, error=reason)
            self.log.note(f"restarting in {decision.delay:.2f} s ({outcome.reason})", "WARN")
            with contextlib.suppress(asyncio.TimeoutError):
                await within(self.stop_requested.wait(), decision.delay)
            if self.stop_requested.is_set():
                await self._read_desired()
                self._record_stopped()
                return 0
            self._event(EventKind.RESTARTED, f"after {decision.delay:.2f} s backoff")

    # -- one run of the server -------------------------------------------------------------
    async def _run_server(self) -> Outcome:
        binary = self.spec.opencode or "opencode"
        # Keep the port across restarts so clients keep working; an explicit one always, an
        # automatic one while it is still free (else the server picks another).
        port = self.spec.port
        previous = self.port
        if (
            port is None
            and previous
            and (self.spec.port_range is not None or ports.port_free(self.spec.hostname, previous))
        ):
            port = previous  # a --port-range port stays in its range, free or not
        if port is None:
            # Not `--port 0`: OpenCode would take its default 4096 whenever it is free.
            with contextlib.suppress(OSError):
                port = ports.ephemeral_port(self.spec.hostname) or None
        argv = [*launch.server_argv(binary, self.spec, port, line=self.expected), "--print-logs"]
        token = self.record.launch_token
        try:
            env = launch.server_env(
                self.settings.environ,
                self.spec,
                password=self.password,
                instance_dir=self.settings.instance_dir(self.name),
                mark=launch.mark_value(self.name, token) if token else None,
                line=self.expected,
            )
        except OcmError as exc:
            return Outcome(ExitKind.CRASHED, str(exc))
        env = self._with_warmup_provider(env)
        self.log.note(f"starting {' '.join(argv)} in {self.spec.dir}")
        self._event(EventKind.STARTED, f"pid pending, port {port or 'auto'}")
        try:
            self.server = await self.spawner.spawn(argv, env=env, cwd=self.spec.dir)
        except OSError as exc:
            return Outcome(ExitKind.CRASHED, f"could not run {binary}: {exc.strerror or exc}")
        server = self.server
        self._write(Registry.server_spawned, self.name, server.identity)
        self.url_found = asyncio.get_running_loop().create_future()
        pumps = [
            asyncio.create_task(self._pump(server.stdout, detect_url=True)),
            asyncio.create_task(self._pump(server.stderr, detect_url=False)),
        ]
        try:
            url = await self._wait_listening()
            if url is None:
                return await self._start_failed(port, pumps)
            endpoint = Endpoint(url=url, password=self.password, name=self.name)
            version = await self._wait_healthy(endpoint)
            if version is None:
                return await self._start_failed(port, pumps)
            # Its line as the health check proved it: the busy check before a recycle asks
            # that line's route.
            endpoint = replace(endpoint, line=self.line or Line.V1)
            warmed = await self._warm_up(endpoint)
            started = self.clock.monotonic()
            self.port = launch.port_of(url)
            listening_port = self.port
            self._write(
                Registry.mark_running,
                self.name,
                url=url,
                port=listening_port,
                version=version,
                at=self.clock.time(),
            )
            self.log.note(f"healthy at {url} (opencode {version})")
            if warmed is not None:
                self.log.note(warmed.describe(), "WARN" if warmed.failed else "INFO")
            outcome = await self._watch(endpoint, started)
            outcome.healthy_once = True
            outcome.uptime = self.clock.monotonic() - started
            return outcome
        finally:
            # Let the pumps drain what the ended server wrote, then stop them.
            with contextlib.suppress(asyncio.TimeoutError):
                await within(asyncio.gather(*pumps, return_exceptions=True), 1.0)
            for task in pumps:
                task.cancel()

    async def _pump(self, stream: asyncio.StreamReader | None, *, detect_url: bool) -> None:
        """Copy a pipe into the log until EOF. Never stops early: a full pipe would block the
        server, so a line that cannot be written is dropped (and counted), not waited for."""
        if stream is None:
            return
        pending = b""
        while True:
            try:
                chunk = await stream.read(READ_CHUNK)
            except (OSError, ValueError):
                return
            if not chunk:
                if pending:
                    self._line(pending, detect_url)
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE:
                lines.append(pending)
                pending = b""
            for raw in lines:
                self._line(raw, detect_url)

    def _line(self, raw: bytes, detect_url: bool) -> None:
        try:
            line = raw.decode("utf-8", errors="replace")
            self.log.server_line(line)
            if detect_url and self.url_found and not self.url_found.done():
                url = launch.parse_listening(line)
                if url:
                    self.url_found.set_result(url)
        except Exception as exc:  # the pump must outlive any one bad line
            self.log.dropped += 1
            self._problem("pump", f"log pump: {exc.__class__.__name__}: {exc}")

    async def _wait_listening(self) -> str | None:
        assert self.server is not None
        assert self.url_found is not None
        exited = asyncio.create_task(self.server.wait())
        stop = asyncio.create_task(self.stop_requested.wait())
        waiters: set[asyncio.Future[Any]] = {self.url_found, exited, stop}
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=self.start_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            exited.cancel()
            stop.cancel()
        if self.url_found in done:
            return str(self.url_found.result())
        return None

    async def _wait_healthy(self, endpoint: Endpoint) -> str | None:
        """Poll the line's health check until the server is ready; its version, or None with
        the reason in `_not_ready`. Gives up at the start deadline, at once when a 2.x boot
        failed (500) or the server answers as another line than its binary's, and after
        NOT_API_GRACE of answers that are no OpenCode API: never a silent wait."""
        assert self.server is not None
        began = self.clock.monotonic()
        deadline = began + self.start_timeout
        delay = 0.02
        last: Verdict | None = None
        problem = ""
        unlike_since: float | None = None
        self._not_ready = None
        while self.clock.monotonic() < deadline and self.server.returncode is None:
            if self.stop_requested.is_set():
                return None
            wait = delay
            try:
                verdict = await self.probe.check(endpoint, timeout=2.0, expected=self.expected)
            except ServerError as exc:
                problem = str(exc)  # not listening yet, or gone: the loop sees it exit
            else:
                last = verdict
                now = self.clock.monotonic()
                if verdict.ready:
                    if self.expected is not None and verdict.line is not self.expected:
                        self._not_ready = readiness.describe_mismatch(
                            self.expected, verdict, self.record.version
                        )
                        return None
                    self.line = verdict.line
                    return verdict.version or ""
                if verdict.phase is Phase.FAILED:
                    self._not_ready = verdict.detail
                    return None
                if verdict.phase is Phase.STARTING:
                    unlike_since = None
                    if verdict.retry_after is not None:
                        wait = max(delay, min(verdict.retry_after, RETRY_AFTER_CAP))
                else:
                    unlike_since = now if unlike_since is None else unlike_since
                    if now - unlike_since >= NOT_API_GRACE:
                        break
            await asyncio.sleep(wait)  # poll interval while waiting for health
            delay = min(delay * 1.5, 0.02)  # the raw limit polls every 10 ms
        waited = self.clock.monotonic() - began
        self._not_ready = readiness.not_ready_reason(last, endpoint.url, waited, problem)
        return None

    # -- the warm-up (warmup.py) -----------------------------------------------------------
    async def _start_model(self) -> None:
        """Listen for the warm-up model's requests (a loopback port for the keeper's life)."""
        if not self.warm:
            if not self.spec.warm:
                self.log.note("warm-up off for this instance (--no-warm / warm = false)")
            return
        model = WarmupModel()
        try:
            await model.start()
        except OSError as exc:
            self.log.note(f"the warm-up model could not listen ({exc}); no warm-up turns", "WARN")
            return
        self.model = model

    def _with_warmup_provider(self, env: dict[str, str]) -> dict[str, str]:
        """The server's environment with the warm-up provider in its config, where that
        cannot change the user's default model (instances/warmprovider.py)."""
        self._provided = None
        if self.model is None:
            return env
        pinned = warmprovider.pinned_by(env, self.spec.dir)
        if pinned is None:
            self.log.note(
                "warm-up: no config layer ocm reads sets `model`, so the warm-up model is not "
                "added to the server's config (it could become the default model); the "
                "shell turn runs in a directory configured for it alone"
            )
            return env
        variable = warmprovider.CONFIG_VARIABLE
        try:
            content = warmprovider.with_provider(env.get(variable), self.model.base_url)
        except OcmError:
            return env  # not JSON: the server says so, and there is nothing to add it to
        self._provided = pinned
        return {**env, variable: content}

    async def _warm_up(self, endpoint: Endpoint, *, again: bool = False) -> Warmup | None:
        """Make the server ready for a first task before it is reported running, or (`again`)
        warm its directory again; bounded by the settings' budget and by a stop request, a
        failure only logged. The shell turn's directory is made and removed here."""
        if not self.warm or self.line is None:
            return None
        scratch = None if again or self.model is None else self._make_scratch()
        steps = warmup.plan(self.line, self.spec.dir, scratch, provided=self._provided is not None)
        if not steps:
            return None
        try:
            return await self._run_warm_up(endpoint, steps)
        finally:
            self._last_use = self.clock.monotonic()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    async def _run_warm_up(self, endpoint: Endpoint, steps: list[warmup.Step]) -> Warmup | None:
        async def call(method: str, target: str, body: object, timeout: float, keep: bool) -> Any:
            return await self.probe.call(
                endpoint, method, target, timeout=timeout, body=body, keep=keep
            )

        answered = self.model.requests if self.model is not None else 0
        cpu = self.server.cpu_seconds() if self.server is not None else None
        serving = self.model.serving() if self.model is not None else contextlib.nullcontext()
        with serving:
            warming = asyncio.create_task(
                warm_up(
                    call,
                    self.line or Line.V1,
                    steps,
                    budget=self.settings.warmup_timeout,
                    clock=self.clock.monotonic,
                )
            )
            stop = asyncio.create_task(self.stop_requested.wait())
            try:
                await asyncio.wait({warming, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if not warming.done():
                warming.cancel()  # a stop was asked: the supervision loop acts on it next
                await asyncio.wait({warming})  # its sessions are deleted first (bounded)
                return None
        result = warming.result()
        if self.model is not None:
            result.model_requests = self.model.requests - answered
        used = self.server.cpu_seconds() if self.server is not None else None
        if cpu is not None and used is not None:
            result.cpu_seconds = used - cpu
        return result

    def _make_scratch(self) -> str | None:
        """The shell turn's throw-away directory, configured for the warm-up model alone."""
        assert self.model is not None
        scratch = self.settings.instance_dir(self.name) / SCRATCH
        try:
            shutil.rmtree(scratch, ignore_errors=True)  # a crashed keeper's
            scratch.mkdir(parents=True)
            config = warmprovider.scratch_config(self.model.base_url)
            (scratch / "opencode.json").write_text(json.dumps(config))
        except OSError as exc:
            self.log.note(f"warm-up: no shell turn ({exc})", "WARN")
            return None
        return str(scratch)

    async def _rewarm_if_due(self, endpoint: Endpoint) -> None:
        """On 1.x, warm the directory again before OpenCode drops its runner: after
        `rewarm_after` without a turn the keeper knows of (a busy session counts as one)."""
        now = self.clock.monotonic()
        if self._provided is None or not warmup.rewarm_due(
            self.line, self._last_use, now, self.rewarm_after
        ):
            return
        try:
            busy = await self.probe.busy(endpoint, self.spec.dir, timeout=5.0)
        except ServerError:
            return  # the health check sees to it
        if busy:
            self._last_use = now
            return
        result = await self._warm_up(endpoint, again=True)
        if result is not None:
            self.log.note("again: " + result.describe(), "WARN" if result.failed else "INFO")

    async def _start_failed(self, port: int | None, pumps: list[asyncio.Task[None]]) -> Outcome:
        assert self.server is not None
        if self.stop_requested.is_set():
            await self._read_desired()
            self._write(Registry.mark_stopping, self.name)
            await self._terminate(self.stop_timeout)
            return Outcome(None, "stopped")
        if self.server.returncode is None:
            await self._terminate()
            reason = self._not_ready or f"not healthy within {self.start_timeout:.0f} s"
            return Outcome(ExitKind.UNHEALTHY, reason)
        with contextlib.suppress(asyncio.TimeoutError):  # let the pumps drain: the cause
            await within(asyncio.gather(*pumps), 2.0)
        reason = launch.explain_exit(self.log.tail, self.spec, port)
        automatic = self.spec.port is None and self.spec.port_range is None
        taken = automatic and port is not None and "already in use" in reason
        return Outcome(ExitKind.CRASHED, reason, code=self.server.returncode, port_taken=taken)

    async def _watch(self, endpoint: Endpoint, started: float) -> Outcome:
        """Supervise a healthy server until it ends, must be recycled, or we are stopped."""
        assert self.server is not None
        server = self.server
        exited = asyncio.create_task(server.wait())
        woken = asyncio.create_task(self.wake.wait())
        misses = 0
        try:
            while True:
                done, _ = await asyncio.wait(
                    {exited, woken},
                    timeout=self.limits.health_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if woken in done:
                    self.wake.clear()
                    woken = asyncio.create_task(self.wake.wait())
                await self._read_desired()
                self._housekeeping()
                if self.stop_requested.is_set():
                    self._write(Registry.mark_stopping, self.name)
                    self.log.note(f"stopping: SIGTERM, then SIGKILL after {self.stop_timeout:g} s")
                    await self._dispose(endpoint, min(DISPOSE_TIMEOUT, self.stop_timeout))
                    await self._terminate(self.stop_timeout)
                    return Outcome(None, "stopped")
                if exited in done:
                    code = server.returncode
                    await self._end_orphans()
                    kind = ExitKind.CLEAN if code == 0 else ExitKind.CRASHED
                    self.log.note(
                        f"server exited on its own ({_describe_exit(code)})",
                        "ERROR" if code else "WARN",
                    )
                    return Outcome(kind, f"server exited ({_describe_exit(code)})", code=code)
                if not done and not await self._healthy(endpoint, misses):
                    misses += 1
                    if misses >= self.limits.health_misses:
                        await self._terminate(WEDGED_STOP_TIMEOUT)
                        return Outcome(
                            ExitKind.UNHEALTHY, f"no answer to {misses} health checks in a row"
                        )
                    continue
                if not done:
                    misses = 0
                    await self._rewarm_if_due(endpoint)
                reason = self._recycle_reason(self.clock.monotonic() - started)
                if reason:
                    await self._recycle(endpoint, reason)
                    return Outcome(ExitKind.RECYCLED, reason)
        finally:
            exited.cancel()
            woken.cancel()

    async def _healthy(self, endpoint: Endpoint, misses: int) -> bool:
        """One liveness probe; a hit also records a heartbeat with CPU and memory."""
        assert self.server is not None
        problem: str | None = None
        try:
            verdict = await self.probe.check(
                endpoint, timeout=self.limits.health_timeout, expected=self.line
            )
        except ServerError as exc:
            problem = str(exc)
        else:
            problem = None if verdict.ready else (verdict.detail or verdict.phase.value)
        if problem is not None:
            self.log.note(
                f"health check missed ({misses + 1}/{self.limits.health_misses}): {problem}",
                "WARN",
            )
            if misses == 0:
                self._event(EventKind.UNHEALTHY, problem)
            self._write(Registry.heartbeat, self.name, key="heartbeat")
            return False
        if misses:
            self.log.note(f"health check answered again after {misses} missed")
            self._event(EventKind.HEALTHY, f"{RECOVERED} after {misses} missed health check(s)")
        sample = self.server.sample()
        if sample is None:
            self._write(Registry.heartbeat, self.name, key="heartbeat")
        else:
            cpu, rss = sample
            self._write(Registry.heartbeat, self.name, cpu=cpu, rss=rss, key="heartbeat")
        return True

    def _housekeeping(self) -> None:
        """Every iteration: reap zombies, cap OpenCode's log, record adopted orphans."""
        server_pid = self.server.pid if self.server else None
        self.host.reap_zombies(server_pid)
        self._cap_opencode_log()
        adopted = []
        for proc in self.host.orphans(server_pid):
            ident = process.identity_of(proc.pid)
            if ident is not None:
                adopted.append(ident)
        if adopted != self._adopted:
            self._adopted = adopted
            self._write(Registry.mark_adopted, self.name, adopted, key="adopted")
        if self.ledger.pending:
            self.ledger.kick()

    def _recycle_reason(self, uptime: float) -> str | None:
        if self.limits.max_age is not None and uptime >= self.limits.max_age:
            return f"recycled: up {uptime:.0f} s (--max-age {self.limits.max_age:g} s)"
        if self.limits.max_memory is not None and self.server is not None:
            rss = self.server.tree_rss()
            if rss > self.limits.max_memory:
                return (
                    f"recycled: {rss // (1024 * 1024)} MiB used "
                    f"(--max-memory {self.limits.max_memory // (1024 * 1024)} MiB)"
                )
        return None

    async def _recycle(self, endpoint: Endpoint, reason: str) -> None:
        """Let a turn in progress finish (up to the grace period), then stop gracefully."""
        self.log.note(reason, "WARN")
        deadline = self.clock.monotonic() + self.limits.recycle_grace
        while self.clock.monotonic() < deadline and not self.stop_requested.is_set():
            try:
                busy = await self.probe.busy(endpoint, self.spec.dir, timeout=5.0)
            except ServerError:
                break
            if not busy:
                break
            await asyncio.sleep(min(1.0, self.limits.health_interval))  # waiting, with a deadline
        await self._dispose(endpoint, DISPOSE_TIMEOUT)
        await self._terminate()

    # -- endings ---------------------------------------------------------------------------
    async def _dispose(self, endpoint: Endpoint, timeout: float) -> None:
        """Ask the server to end its tool processes and MCP/LSP servers (bounded). 2.x has
        no such route: it does all that itself on SIGTERM, and exits 130."""
        if self.line is Line.V2:
            return
        try:
            await self.probe.dispose(endpoint, timeout=timeout)
        except OcmError as exc:
            self.log.note(f"dispose did not complete: {exc}", "WARN")

    async def _terminate(self, timeout: float = STOP_TIMEOUT) -> None:
        assert self.server is not None
        orphans = self.host.orphans(self.server.pid)
        result = await self.server.terminate(timeout, orphans)
        if result.killed:
            self.log.note(f"needed SIGKILL: {', '.join(result.killed_names)}", "WARN")
        await self._end_orphans()

    async def _end_orphans(self) -> None:
        for proc in self.host.orphans(None):
            await asyncio.to_thread(
                process.terminate_tree, proc, timeout=STOP_TIMEOUT, spare=self.spare
            )
        self.host.reap_zombies(self.server.pid if self.server else None)

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
        self._event(EventKind.STOPPED, "on request")
        self._write(Registry.mark_ended, self.name, State.STOPPED, error=None, last_exit="stopped")

    def _fail(self, reason: str, code: int | None) -> int:
        self.log.note(f"start failed: {reason}", "ERROR")
        self._event(EventKind.CRASHED, f"start failed: {reason}")
        last_exit = _describe_exit(code)
        self._write(
            Registry.mark_ended, self.name, State.CRASHED, error=reason, last_exit=last_exit
        )
        return 1

    # -- reporting -------------------------------------------------------------------------
    def _write(
        self, method: Callable[..., None], *args: Any, key: str | None = None, **kwargs: Any
    ) -> None:
        """Queue a registry transition (arguments bound now, applied by the ledger), and
        fold it into the keeper's own copy of its row."""
        row.fold(self.row, method.__name__, args, kwargs, time.time())
        self.ledger.write(
            lambda registry: method(registry, *args, **kwargs),
            key=key,
            event=method is Registry.add_event,
        )

    def _registry_replaced(self) -> None:
        """The registry file is another one now (`ocm restore`): write our row into it."""
        self.log.note("the registry file was replaced; writing this instance's state into it")
        self.ledger.rejoin(self._rejoin)

    def _rejoin(self, registry: Registry) -> None:
        """The whole row as the keeper knows it now (computed when applied, so it is never
        older than the transitions queued before it)."""
        stopping = self.stop_requested.is_set()
        fields = {key: self.row[key] for key in row.OWNED}
        if fields["keeper_pid"] is not None and fields["state"] is State.RUNNING:
            fields["heartbeat_at"] = time.time()
        registry.rejoin(
            self.name,
            self.spec,
            created_at=self.record.created_at,
            **fields,
            desired="stopped" if stopping else "running",
            stop_timeout=self.stop_timeout if stopping else None,
            launch_token=self.record.launch_token,
            starter_pid=None,
            starter_ctime=None,
        )

    def _event(self, kind: EventKind, detail: str) -> None:
        self._write(Registry.add_event, self.name, kind.value, detail, at=self.clock.time())

    def _problem(self, source: str, problem: str | None) -> None:
        """A problem of the keeper's own (registry, log) appears in `ocm status`, or clears."""
        if problem is None:
            if self._problems.pop(source, None) is None:
                return
        elif self._problems.get(source) == problem:
            return
        else:
            self._problems[source] = problem
            self.log.note(problem, "WARN")
            self._event(EventKind.KEEPER_ERROR, problem)
        summary = "; ".join(self._problems.values()) or None
        self._write(Registry.keeper_problem, self.name, summary, key="problem")

    def _registry_trouble(self, problem: str | None) -> None:
        self._problem(
            "registry",
            None
            if problem is None
            else f"registry not writable ({problem}); supervising from memory and retrying",
        )
        dropped = self.ledger.dropped - self._dropped_said
        if problem is None and dropped:
            self._dropped_said = self.ledger.dropped
            self._event(
                EventKind.KEEPER_ERROR,
                f"{dropped} event(s) were not recorded: more happened while the registry "
                "could not be written than the keeper keeps",
            )

    def _log_trouble(self, problem: str | None) -> None:
        self._problem("log", problem)


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
    parser.add_argument("--detach", action="store_true")  # handled in __main__ before imports
    parser.add_argument("name")
    args = parser.parse_args(argv)
    settings = Settings.load(home=args.home)
    try:
        keeper = Keeper.load(settings, args.name)
    except OcmError as exc:
        print(f"keeper: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(keeper.run())
