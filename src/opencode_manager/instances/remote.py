"""Remote instances: OpenCode servers on other hosts, added by URL (`ocm remote add`).

ocm reaches a remote instance like one of its own (tasks, batches, sessions, monitor, the
dashboard, MCP) but runs none of its processes: its lifecycle belongs to whoever started it,
so `stop`, `restart` and `rm` refuse it, and its health is asked over HTTP, never read from
/proc. Its password is stored 0600 like a local instance's and never echoed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..client import healthcheck
from ..client.endpoint import Endpoint
from ..client.readiness import Phase
from ..errors import ConflictError, ServerRefused, ServerUnreachable, UsageError
from ..lines import Line
from ..models import DEFAULT_USERNAME, InstanceInfo, InstanceRecord, InstanceSpec
from ..supervision import RestartPolicy
from . import credentials
from .fleet import Fleet
from .inventory import instance_info
from .spec import validate_name

#: How long `ocm remote add` waits for the server's answers.
CHECK_TIMEOUT = 10.0


@dataclass(frozen=True)
class Found:
    """What a remote server says about itself when it is added."""

    url: str
    version: str  # its line is this version's (lines.py): stored in the row, shown by `ls`
    directory: str


def parse_url(url: str) -> str:
    """A server's base URL, checked: http(s), a host, a port (or the scheme's own)."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise UsageError(f"invalid URL {url!r}: expected http://HOST:PORT") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"invalid URL {url!r}: expected http://HOST:PORT or https://HOST")
    if parts.username or parts.password:
        raise UsageError(
            f"invalid URL {url!r}: credentials do not belong in the URL (they would show in "
            "`ocm ls` and shell history); use --username and --password-file or --password-env"
        )
    if parts.query or parts.fragment:
        raise UsageError(f"invalid URL {url!r}: no query or fragment, please")
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


async def check(
    url: str, *, username: str, password: str | None, timeout: float = CHECK_TIMEOUT
) -> Found:
    """Ask the server at `url` who it is: its line and version (`/api/info` on 2.x,
    `/global/health` on 1.x, as the keeper finds them), then its directory.

    Raises ServerUnreachable (nothing answers), ServerRefused (wrong or missing password,
    still starting, or not an OpenCode server), each with a message that says which.
    """
    endpoint = Endpoint(url=url, password=password, username=username)
    try:
        verdict = await healthcheck.check(endpoint, timeout=timeout)
    except ServerUnreachable:
        raise ServerUnreachable(
            f"nothing answers at {url}: is the server up and reachable?"
        ) from None
    if verdict.phase is Phase.LOCKED:
        raise _refused(url, ServerRefused(verdict.detail, status_code=401), password)
    if verdict.phase is Phase.STARTING:
        raise ServerRefused(
            f"{url} is OpenCode {verdict.version or '2.x'} and still starting "
            f"({verdict.detail}); try again in a moment",
            status_code=503,
        )
    if not verdict.ready or verdict.version is None:
        raise ServerRefused(
            f"{url} answers, but not as an OpenCode server ({verdict.detail})",
            status_code=500 if verdict.phase is Phase.FAILED else 200,
        )
    route = "/path" if verdict.line is Line.V1 else "/api/location"
    try:
        path: Any = await healthcheck.call(endpoint, "GET", route, timeout=timeout)
    except ServerRefused as exc:
        raise _refused(url, exc, password) from None
    if isinstance(path, dict) and isinstance(path.get("data"), dict):
        path = path["data"]  # 2.x wraps its answers
    directory = path.get("directory") if isinstance(path, dict) else None
    if not isinstance(directory, str) or not directory:
        raise ServerRefused(
            f"{url} answers, but not as an OpenCode server ({route})", status_code=200
        )
    return Found(url=url, version=verdict.version, directory=directory)


def _refused(url: str, exc: ServerRefused, password: str | None) -> ServerRefused:
    if exc.status_code == 401:
        if password is None:
            return ServerRefused(
                f"{url} needs a password: give --password-file FILE or --password-env VAR",
                status_code=401,
            )
        return ServerRefused(f"{url} refused the username or password", status_code=401)
    return ServerRefused(
        f"{url} answers, but not as an OpenCode server ({exc.message})",
        status_code=exc.status_code,
    )


async def add(
    fleet: Fleet,
    name: str,
    url: str,
    *,
    username: str = DEFAULT_USERNAME,
    password: str | None = None,
    timeout: float = CHECK_TIMEOUT,
) -> InstanceRecord:
    """Check the server, then record it as a running remote instance and store its password."""
    validate_name(name)
    base = parse_url(url)
    if not username or ":" in username or any(c.isspace() for c in username):
        raise UsageError(f"invalid --username {username!r}: no spaces or ':'")
    if password is not None and not password.strip():
        raise UsageError("the password is empty")
    if await asyncio.to_thread(fleet.registry.find, name) is not None:
        raise ConflictError(f"an instance named {name!r} already exists; pick another name")
    found = await check(base, username=username, password=password, timeout=timeout)
    spec = InstanceSpec(
        name=name,
        dir=found.directory,
        port=port_of(base),
        hostname=urlsplit(base).hostname or "",
        auth=password is not None,
        remote=True,
        username=username,
        restart=RestartPolicy.NEVER,
    )
    await asyncio.to_thread(_record, fleet, spec, base, found.version, password)
    return await asyncio.to_thread(fleet.registry.get, name)


async def added(
    fleet: Fleet,
    name: str,
    url: str,
    *,
    username: str = DEFAULT_USERNAME,
    password: str | None = None,
) -> InstanceInfo:
    """`ocm remote add`: check and record the server (`add`), then show it as `ls` does."""
    record = await add(fleet, name, url, username=username, password=password)
    return await instance_info(fleet, record.name, record)


def _record(fleet: Fleet, spec: InstanceSpec, url: str, version: str, password: str | None) -> None:
    """The row and its password in one step: the password is written inside the row's
    transaction, so no reader sees a remote without it, and a failed write leaves neither
    (a name taken meanwhile fails before the password is touched)."""
    registry = fleet.registry
    with registry.transaction() as db:
        registry.add_remote(db, spec, url=url, version=version)
        if password is not None:
            credentials.write_password(fleet.settings, spec.name, password.strip())


def remove(fleet: Fleet, refs: Sequence[str]) -> list[str]:
    """Forget remote instances: their record and password (the servers are left alone)."""
    if not refs:
        raise UsageError("which remote instances? give their names")
    records = fleet.resolve_all(refs)
    for record in records:
        if record.spec.node:
            raise ConflictError(
                f"{record.name} runs on the Ray cluster; `ocm rm {record.name}` removes it there",
                instance=record.name,
            )
        if not record.spec.remote:
            raise ConflictError(
                f"{record.name} is not a remote instance; `ocm rm {record.name}` forgets it",
                instance=record.name,
            )
    for record in records:
        fleet.registry.delete(record.name)
        credentials.delete_password(fleet.settings, record.name)
    return [r.name for r in records]


def refuse(records: Sequence[InstanceRecord], action: str) -> None:
    """Lifecycle commands act on processes ocm runs; a remote's belong to its own host."""
    for record in records:
        if record.spec.node:
            raise ConflictError(
                f"{record.name} runs on the Ray cluster: ocm cannot {action} it from here",
                instance=record.name,
            )
        if record.spec.remote:
            raise ConflictError(
                f"{record.name} is a remote instance ({record.url}): ocm cannot {action} it; "
                f"do that on its host (`ocm remote rm {record.name}` forgets it here)",
                instance=record.name,
            )
