"""The managed fleet as the rest of the library sees it: settings, the registry, and how to
find and reach each instance (by name, port or URL; endpoint with its credentials; a client
over the facade's one HTTP client).

Everything below the facade that needs "the fleet" takes a `Fleet`; nothing reaches back up
into the manager.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import psutil

from .. import process
from ..client import healthcheck
from ..client.endpoint import Endpoint
from ..errors import ConflictError, NotFoundError, OcmError, ServerError, UsageError
from ..lines import Line, known_line
from ..models import DesiredState, InstanceRecord, ProcessIdentity, State
from ..registry import Registry, open_registry
from ..secretbook import SecretBook
from ..settings import Settings
from . import credentials, launch, probe
from .discovery import ForeignServer, find_foreign
from .logs import is_error, tail_across
from .spec import parse_port

if TYPE_CHECKING:
    import httpx

    from ..client.pool import HttpPool
    from ..client.shells import AsyncOpencodeClient

#: A keeper whose heartbeat is older than this many health intervals (plus a margin) is
#: reported as not answering.
HEARTBEAT_INTERVALS = 3
HEARTBEAT_MARGIN = 10.0
#: How long a remote instance's health answer is reused, and how long it may take.
REMOTE_HEALTH_TTL = 1.0
REMOTE_HEALTH_TIMEOUT = 2.0


class Fleet:
    """Settings plus the registry (opened on first use), lookups over them, and the one HTTP
    client every call to a server goes through (`client`).

    `transport` (an `httpx.AsyncBaseTransport`, e.g. `httpx.MockTransport` over
    `opencode_manager.testing.opencode.FakeOpencode`) carries every such call instead of
    the network."""

    def __init__(
        self,
        settings: Settings,
        *,
        backups: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        #: Every secret kept in this OCM_HOME: what reads from servers are redacted of.
        self.secrets = SecretBook(settings)
        self._registry: Registry | None = None
        self._backups = backups
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[float, bool]] = {}  # remote name -> (when, healthy)
        #: The CPU of servers no keeper samples, from one look at the fleet to the next.
        self.cpu = probe.CpuMeter()
        self._transport = transport
        self._pool: HttpPool | None = None  # made on first use: httpx is imported then

    @property
    def registry(self) -> Registry:
        with self._lock:  # worker threads may ask at once
            return self._open_registry()

    def _open_registry(self) -> Registry:
        if self._registry is None:
            self._registry = open_registry(self.settings, backups=self._backups)
        return self._registry

    def close(self) -> None:
        """Close the registry (the HTTP client is closed by `aclose`, in its loop)."""
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    async def aclose(self) -> None:
        """Close the HTTP client (in the loop it was made in) and the registry."""
        await self.aclose_http()
        self.close()

    async def aclose_http(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    @property
    def http_open(self) -> bool:
        """Whether the HTTP client was made and is not closed yet."""
        return self._pool is not None and self._pool.open

    # -- lookups ---------------------------------------------------------------------------
    def records(self) -> list[InstanceRecord]:
        return self.registry.instances()

    def running(self) -> list[InstanceRecord]:
        """Instances that can take work (recorded running; server alive, or a remote's
        answering its health check)."""
        return [r for r in self.records() if r.state is State.RUNNING and r.url and self.up(r)]

    def returning(self, refs: Sequence[str] = ()) -> list[str]:
        """Local instances (of `refs`, or all) not serving now whose keeper is bringing them
        back: a restart after a crash or missed health checks. Work waits for these rather
        than failing; an instance given up on (errored) or asked to stop is not returning."""
        found = [] if refs else self.records()
        for ref in dict.fromkeys(refs):
            with contextlib.suppress(OcmError):
                record = self.find(ref)
                if isinstance(record, InstanceRecord):
                    found.append(record)
        return [
            r.name
            for r in found
            if not r.spec.remote
            and r.desired is DesiredState.RUNNING
            and r.state in (State.STARTING, State.RUNNING, State.CRASHED)
            and process.verified(r.keeper) is not None
            and not (r.state is State.RUNNING and self.up(r))
        ]

    def serving(self, name: str) -> ProcessIdentity | None:
        """The process serving a local instance now (None while none runs, or for a remote
        one, whose processes are not ours to see): what holds a prompt sent to it."""
        try:
            record = self.resolve(name)
        except OcmError:
            return None
        if record.spec.remote:
            return None
        server = current_server(record)
        return process.identity_of(server.pid) if server is not None else None

    def up(self, record: InstanceRecord) -> bool:
        """Its server is there: a local one's process is alive; a remote one answers."""
        if not record.spec.remote:
            return is_up(record)
        now = time.monotonic()
        seen = self._answers.get(record.name)
        if seen is not None and now - seen[0] < REMOTE_HEALTH_TTL:
            return seen[1]
        endpoint = self.endpoint(record)
        try:
            healthy = (
                endpoint is not None
                and healthcheck.check_blocking(
                    endpoint, timeout=REMOTE_HEALTH_TIMEOUT, expected=known_line(record.version)
                ).ready
            )
        except ServerError:
            healthy = False
        self._answers[record.name] = (time.monotonic(), healthy)
        return healthy

    def resolve(self, ref: str) -> InstanceRecord:
        """A managed instance by name, port or URL; foreign servers are refused."""
        found = self.find(ref)
        if isinstance(found, ForeignServer):
            raise ConflictError(
                f"{ref} is an OpenCode server ocm did not start (pid {found.pid}); "
                "ocm only acts on instances it manages"
            )
        return found

    def resolve_all(self, refs: Sequence[str]) -> list[InstanceRecord]:
        """Each reference resolved once, in order, duplicates dropped."""
        seen: dict[str, InstanceRecord] = {}
        for ref in refs:
            record = self.resolve(ref)
            seen.setdefault(record.name, record)
        return list(seen.values())

    def resolve_running(self, ref: str) -> InstanceRecord:
        record = self.resolve(ref)
        if record.spec.remote and record.state is State.RUNNING and not self.up(record):
            raise ConflictError(
                f"{record.name} (remote, {record.url}) does not answer; see `ocm ls`",
                instance=record.name,
            )
        if record.state is not State.RUNNING or not self.up(record):
            hint = "`ocm start` or `ocm restart` it"
            if record.spec.node and record.state is State.CRASHED:
                hint = f"{record.error or 'its host is lost'}; `ocm rm {record.name}` forgets it"
            raise ConflictError(
                f"{record.name} is not running; {hint}",
                instance=record.name,
            )
        return record

    def find(self, ref: str) -> InstanceRecord | ForeignServer:
        """A managed instance, or a foreign server, by name, port or URL."""
        ref = ref.strip()
        if not ref:
            raise UsageError("empty instance reference")
        record = self.registry.find(ref)
        if record is not None:
            return record
        port: int | None = None
        if ref.startswith("foreign:") and ref[len("foreign:") :].isdigit():
            port = parse_port(ref[len("foreign:") :])  # the name `ocm ls` shows a foreign server
        elif ref.isdigit():
            port = parse_port(ref)
        elif "://" in ref:
            port = launch.port_of(ref)
            if port is None:
                raise UsageError(f"invalid instance URL {ref!r}: no port in it")
        if port is not None:
            matches = [r for r in self.records() if r.port == port]
            live = [
                r for r in matches if r.state in (State.RUNNING, State.STARTING, State.STOPPING)
            ]
            if live or matches:
                return (live or matches)[-1]
            for foreign in find_foreign(set()):
                if foreign.port == port:
                    return foreign
            raise NotFoundError(f"no instance on port {port}; see `ocm ls`")
        raise NotFoundError(f"no instance named {ref!r}; see `ocm ls`", instance=ref)

    # -- reaching an instance --------------------------------------------------------------
    def password(self, record: InstanceRecord) -> str | None:
        if not record.spec.auth:
            return None
        return credentials.read_password(self.settings, record.name)

    def endpoint(self, record: InstanceRecord) -> Endpoint | None:
        if not record.url:
            return None
        return Endpoint(
            url=record.url,
            password=self.password(record),
            username=record.spec.username,
            name=record.name,
            known_secrets=self.secrets.values,
            timeout=self.settings.http_timeout,
            line=known_line(record.version) or Line.V1,
        )

    def reader(self, ref: str) -> Endpoint:
        """Where to read from: a running managed instance (with its password), or a foreign
        server (without one: a server that needs a password ocm does not have refuses)."""
        found = self.find(ref)
        if isinstance(found, ForeignServer):
            return Endpoint(
                url=found.url,
                name=f"foreign:{found.port}",
                known_secrets=self.secrets.values,
                timeout=self.settings.http_timeout,
                line=_foreign_line(found),
            )
        if found.state is not State.RUNNING or not (found.spec.remote or is_up(found)):
            return self.endpoint_of(self.resolve_running(ref))  # raises: not running
        return self.endpoint_of(found)

    def endpoint_of(self, record: InstanceRecord) -> Endpoint:
        endpoint = self.endpoint(record)
        if endpoint is None:
            raise ConflictError(
                f"{record.name} has no URL yet (status {record.state.value})",
                instance=record.name,
            )
        return endpoint

    def client(
        self, target: InstanceRecord | Endpoint, *, timeout: float | None = None
    ) -> AsyncOpencodeClient:
        """A client for an instance (or any server's endpoint) over the facade's one HTTP
        client; call it inside the running event loop. `timeout`: a probe's own deadline
        per call, instead of the OCM_HTTP_TIMEOUT setting's (see client/core.py)."""
        endpoint = target if isinstance(target, Endpoint) else self.endpoint_of(target)
        if self._pool is None:
            from ..client.pool import HttpPool

            self._pool = HttpPool(self._transport)
        return self._pool.client(endpoint, timeout=timeout)

    # -- logs ------------------------------------------------------------------------------
    def log_tail(self, name: str, lines: int) -> list[str]:
        return tail_across(self.settings.log_path(name), lines)

    def recent_errors(self, name: str, limit: int = 10) -> list[str]:
        lines = tail_across(self.settings.log_path(name), 500)
        return [ln for ln in lines if is_error(ln)][-limit:]


def _foreign_line(found: ForeignServer) -> Line:
    """A foreign server's line: its registration's version, else what its unauthenticated
    answers prove (client/readiness.py); 1.x when nothing tells."""
    line = known_line(found.version)
    if line is not None:
        return line
    try:
        verdict = healthcheck.check_blocking(
            Endpoint(url=found.url), timeout=REMOTE_HEALTH_TIMEOUT, expected=None
        )
    except ServerError:
        return Line.V1
    return verdict.line or Line.V1


# -- liveness (pure reads of /proc) ------------------------------------------------------------
def is_up(record: InstanceRecord) -> bool:
    """Its server process is alive (whatever its keeper is doing)."""
    return current_server(record) is not None


def current_server(record: InstanceRecord) -> psutil.Process | None:
    """Its server process: the one recorded, or the one its live keeper runs now when the
    registry has not caught up (a full disk: the keeper restarted it and could not say so).

    That one is the keeper's child whose command line is a server's and whose environment
    carries the instance's launch marker (and not an orphan the keeper adopted).
    """
    proc = process.verified(record.server)
    if proc is not None or not record.launch_token:
        return proc
    keeper = process.verified(record.keeper)
    if keeper is None:
        return None
    mark = launch.mark_value(record.name, record.launch_token)
    adopted = {ident.pid for ident in record.adopted}
    found = []
    with contextlib.suppress(psutil.Error):
        for child in keeper.children():
            with contextlib.suppress(psutil.Error):
                if (
                    child.pid not in adopted
                    and child.status() != psutil.STATUS_ZOMBIE
                    and process.is_server_argv(child.cmdline())
                    and child.environ().get(launch.MARK_VARIABLE) == mark
                ):
                    found.append(child)
    return found[0] if len(found) == 1 else None


def is_live(record: InstanceRecord) -> bool:
    """Anything of it may still run: keeper, server, or the `ocm start` bringing it up
    (never for a remote instance: nothing of it runs here, not even while a cluster start
    that claims its row is bringing it up on another host)."""
    if record.spec.remote:
        return False
    if process.is_alive(record.keeper) or process.is_alive(record.server):
        return True
    return record.state is State.STARTING and process.is_alive(record.starter)


def keeper_answering(
    record: InstanceRecord, now: float | None = None, *, server_healthy: bool | None = None
) -> bool | None:
    """Whether its keeper's loop is alive: None when there is no keeper to ask.

    A stale heartbeat alone does not say so: a keeper that cannot write (a full disk) keeps
    supervising, so while its process runs and its server answers health (`server_healthy`,
    when the caller asked), it counts as answering."""
    keeper = process.verified(record.keeper)
    if keeper is None:
        return None
    if process.is_frozen(keeper):
        return False
    if record.heartbeat_at is None or record.state is not State.RUNNING:
        return True  # heartbeats come from the watch loop, which runs once the server is up
    limit = HEARTBEAT_INTERVALS * record.spec.health_interval + HEARTBEAT_MARGIN
    return (now or time.time()) - record.heartbeat_at <= limit or server_healthy is True
