"""`ocm doctor`: every check with what was found and, when something is wrong, the fix."""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import process
from ..client import Endpoint, healthcheck
from ..client.readiness import Phase
from ..errors import OcmError, ServerError, ServerRefused
from ..lines import SUPPORTED_LINES, Line, known_line
from ..models import InstanceRecord, State, Status, TextEnum
from ..text import human_size, one_line
from . import binary as binaries
from . import ports
from .fleet import Fleet
from .inventory import list_instances

#: Below this much free space where OCM_HOME is, doctor says the disk is full.
LOW_SPACE = 1 << 20
RESTORE_FIX = (
    "`ocm restore` swaps in the newest backup that passes integrity_check (`ocm restore "
    "--list` shows them); the fleet keeps running and the damaged file is kept"
)
_NO_CAUSE = "its processes are gone, and nothing recorded why (see `ocm events` and `ocm logs`)"


def _free_space(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class CheckLevel(TextEnum):
    """How much a failed check matters (`ocm doctor` exits non-zero on errors only)."""

    ERROR = "error"  # something does not work
    WARNING = "warning"  # works, but worth a look


@dataclass
class Check:
    """One `ocm doctor` finding."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    level: CheckLevel = CheckLevel.ERROR

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "level": self.level.value}


async def run_checks(fleet: Fleet) -> list[Check]:
    checks: list[Check] = []
    settings = fleet.settings

    # OCM_HOME first: nothing else works without it.
    try:
        settings.ensure_home()
        checks.append(Check("home", True, f"OCM_HOME {settings.home} is writable"))
    except OcmError as exc:
        checks.append(
            Check("home", False, str(exc), fix="chmod u+w it, or export OCM_HOME=/a/writable/dir")
        )
        return checks

    try:
        found = await asyncio.to_thread(binaries.find_binary, settings)
        checks.append(
            Check(
                "binary",
                True,
                f"opencode {found.version} (OpenCode {found.line.label}) at {found.path} "
                f"(from {found.source})",
            )
        )
    except OcmError as exc:
        checks.append(
            Check(
                "binary",
                False,
                str(exc),
                fix=f"run `ocm install` (needs npm), or set OCM_OPENCODE; supported: "
                f"{SUPPORTED_LINES}",
            )
        )

    room = _free_space(settings.home)
    if room is not None and room < LOW_SPACE:
        checks.append(
            Check(
                "disk",
                False,
                f"{human_size(room)} free where OCM_HOME is: registry and log writes fail "
                "(keepers keep what they cannot write and retry)",
                fix=f"free some space on the file system of {settings.home}",
            )
        )

    try:
        records = fleet.registry.instances()
        migrations = fleet.registry.applied_migrations()
        # The full check, not quick_check: only it compares each index with its table,
        # which is what a stale -wal replayed onto another file breaks.
        integrity = await asyncio.to_thread(fleet.registry.integrity_check)
    except OcmError as exc:
        checks.append(Check("registry", False, str(exc), fix=RESTORE_FIX))
        return checks
    if integrity != "ok":
        checks.append(
            Check(
                "registry",
                False,
                f"{settings.registry_path} is damaged: PRAGMA integrity_check: {integrity}",
                fix=RESTORE_FIX,
            )
        )
        return checks  # what it says about instances cannot be trusted
    checks.append(
        Check(
            "registry",
            True,
            f"{settings.registry_path}: {len(records)} instance(s), "
            f"{len(migrations)} migration(s) applied, integrity_check ok",
        )
    )
    infos = {info.name: info for info in await list_instances(fleet, include_foreign=False)}
    for record in records:
        info = infos.get(record.name)
        if info is None or info.status in (Status.STOPPED,):
            continue
        label = f"instance {record.name}"
        if record.spec.remote:
            if info.status is not Status.RUNNING:
                checks.append(
                    Check(
                        label,
                        False,
                        f"remote {record.url} does not answer: {info.error or info.status.value}",
                        fix=f"check the server on its host, or `ocm remote rm {record.name}`",
                        level=CheckLevel.WARNING,
                    )
                )
                continue
            checks.append(Check(label, True, f"remote {record.url}, opencode {info.version}"))
            continue
        if info.status is Status.CRASHED:
            checks.append(
                Check(
                    label,
                    False,
                    f"crashed: {record.error or record.last_exit or _NO_CAUSE}",
                    fix=f"`ocm logs {record.name}`, then `ocm restart {record.name}`"
                    f" or `ocm rm {record.name}`",
                    level=CheckLevel.WARNING,
                )
            )
            continue
        if info.status is Status.UNHEALTHY:
            checks.append(
                Check(
                    label,
                    False,
                    f"process alive but {_line(record).health_route} fails",
                    fix=f"`ocm restart {record.name}`",
                )
            )
            continue
        if record.keeper_error:
            checks.append(
                Check(
                    label,
                    False,
                    f"its keeper reports: {record.keeper_error}",
                    fix="free disk space or release the registry lock; the keeper retries",
                    level=CheckLevel.WARNING,
                )
            )
        if info.keeper_answering is False:
            checks.append(
                Check(
                    label,
                    False,
                    "its keeper does not answer (frozen, or its heartbeat is stale)",
                    fix=f"`ocm restart {record.name}`",
                    level=CheckLevel.WARNING,
                )
            )
        if info.supervised is False:
            checks.append(
                Check(
                    label,
                    False,
                    "running without its keeper",
                    fix=f"`ocm restart {record.name}` to supervise it again",
                    level=CheckLevel.WARNING,
                )
            )
        endpoint = fleet.endpoint(record)
        if endpoint is not None and info.status is Status.RUNNING:
            checks.append(await _auth_check(label, record.spec.auth, endpoint, _line(record)))
            checks.extend(await project_checks(fleet, record))

    claimed = Counter(
        r.port
        for r in records
        if r.port and r.state in (State.RUNNING, State.STARTING) and process.is_alive(r.server)
    )
    for port, count in claimed.items():
        if count > 1:
            checks.append(
                Check(
                    f"port {port}",
                    False,
                    f"{count} instances claim port {port}",
                    fix="stop all but one of them",
                )
            )
    for record in records:
        spec_port = record.spec.port
        if (
            spec_port
            and record.state in (State.STOPPED, State.CRASHED, State.ERRORED)
            and not ports.port_free(record.spec.hostname, spec_port)
        ):
            checks.append(
                Check(
                    f"port {spec_port}",
                    False,
                    f"{record.name} is configured for port {spec_port}, now used by another "
                    "process",
                    fix=f"free the port, or `ocm rm {record.name}` and start it on another port",
                    level=CheckLevel.WARNING,
                )
            )
    return checks


def _line(record: InstanceRecord) -> Line:
    return known_line(record.version) or Line.V1


async def _auth_check(label: str, auth: bool, endpoint: Endpoint, line: Line) -> Check:
    """Its line's health check without credentials (refused, if it has a password), then
    with ours (accepted)."""
    anonymous = Endpoint(url=endpoint.url, name=endpoint.name)
    restart = f"`ocm restart {endpoint.name}`"
    try:
        verdict = await healthcheck.check(anonymous, timeout=3.0, expected=line)
    except ServerError as exc:
        return Check(label, False, f"health check failed: {exc}", fix=restart)
    if verdict.phase is not Phase.LOCKED and not verdict.ready:
        return Check(label, False, f"health check failed: {verdict.detail}", fix=restart)
    open_to_all = verdict.ready
    if auth and open_to_all:
        return Check(label, False, "answers without a password although auth is on", fix=restart)
    if auth:
        try:
            verdict = await healthcheck.check(endpoint, timeout=3.0, expected=line)
        except ServerError as exc:
            return Check(label, False, f"health check failed: {exc}", fix=restart)
        if not verdict.ready:
            return Check(
                label,
                False,
                f"our stored password is refused: {verdict.detail}",
                fix=f"{restart} to hand it the password again",
            )
        return Check(label, True, "healthy; refuses anonymous requests, accepts ours")
    return Check(
        label, True, "healthy; no password (--no-auth, loopback only)", level=CheckLevel.WARNING
    )


async def project_checks(fleet: Fleet, record: InstanceRecord, *, mcp: bool = True) -> list[Check]:
    """What OpenCode makes of the instance's project: does its config load (a broken
    `opencode.json` does not stop the server answering health), do its MCP servers start?"""
    endpoint = fleet.endpoint(record)
    if endpoint is None:
        return []
    label = f"instance {record.name}"
    directory = record.spec.dir
    checks: list[Check] = []
    client = fleet.client(endpoint, timeout=10.0)
    fix = f"fix the file, then `ocm restart {record.name}` (OpenCode reads it once)"
    try:
        await client.config(directory)  # 1.x refuses a config it cannot load
        loaded = await client.loaded_config_files(directory)  # 2.x leaves it out
    except ServerRefused as exc:
        detail = exc.detail or str(exc)
        if exc.status_code >= 500 and "config" not in detail.lower():
            # Not the config: OpenCode failed opening the project (its storage, say).
            room = _free_space(fleet.settings.instance_dir(record.name))
            full = room is not None and room < LOW_SPACE
            return [
                Check(
                    label,
                    False,
                    f"OpenCode fails to open the project ({detail})"
                    + ("; its data directory's disk is full" if full else ""),
                    fix="free some space, then try again" if full
                    else f"see `ocm logs {record.name}`",
                    level=CheckLevel.WARNING,
                )
            ]  # fmt: skip
        return [
            Check(
                label,
                False,
                f"OpenCode cannot load the project's config: {detail}",
                fix=fix,
                level=CheckLevel.WARNING,
            )
        ]
    except ServerError:
        return []  # not answering: the health checks above say so
    left_out = _left_out(directory, loaded) if loaded is not None and not record.spec.remote else []
    if left_out:  # its files are on this host: the ones the server left out
        why = _config_diagnostic(fleet.log_tail(record.name, 2000), left_out[0])
        return [
            Check(
                label,
                False,
                f"OpenCode did not load the project's config {left_out[0]}: {why}",
                fix=fix,
                level=CheckLevel.WARNING,
            )
        ]
    if not mcp:
        return []
    try:
        servers = await client.mcp_status(directory)
    except ServerError:
        return []
    for server, state in sorted(servers.items()):
        if isinstance(state, dict) and state.get("status") == "failed":
            checks.append(
                Check(
                    label,
                    False,
                    f"MCP server {server} failed: {one_line(str(state.get('error') or '?'))}",
                    fix=f"check `mcp.{server}` in the project's opencode.json (does its command "
                    f"exist?), then `ocm restart {record.name}`",
                    level=CheckLevel.WARNING,
                )
            )
    return checks


#: The project config files OpenCode reads from the project directory itself.
PROJECT_CONFIG_FILES = ("opencode.json", "opencode.jsonc")
_DIAGNOSTIC = re.compile(r'message="configuration normalization diagnostic".*?action="([^"]*)"')


def _left_out(directory: str, loaded: list[str]) -> list[str]:
    """The project's config files that exist but are not among those the server loaded."""
    found = [str(Path(directory) / name) for name in PROJECT_CONFIG_FILES]
    seen = {os.path.realpath(path) for path in loaded}
    return [p for p in found if os.path.isfile(p) and os.path.realpath(p) not in seen]


def _config_diagnostic(log: list[str], path: str) -> str:
    """Why OpenCode 2.x left a config file out, from its log (`configuration normalization
    diagnostic source=PATH ... action="rejected malformed JSON or JSONC document"`)."""
    for line in reversed(log):
        if f"source={path} " in line:
            match = _DIAGNOSTIC.search(line)
            if match:
                return match.group(1)
    return "it rejected it (see `ocm logs` for the server's diagnostic)"


async def check_projects(fleet: Fleet, refs: Sequence[str], *, mcp: bool = True) -> list[Check]:
    """`project_checks` of each named instance, asked at once."""
    records = await asyncio.to_thread(lambda: [fleet.resolve(ref) for ref in refs])
    found = await asyncio.gather(*(project_checks(fleet, r, mcp=mcp) for r in records))
    return [check for checks in found for check in checks]
