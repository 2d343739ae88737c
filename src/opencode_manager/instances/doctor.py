"""`ocm doctor`: every check with what was found and, when something is wrong, the fix."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .. import process
from ..client import Endpoint, OpencodeClient
from ..errors import OcmError, ServerError
from ..models import State, Status
from ..settings import MIN_OPENCODE_VERSION
from . import binary as binaries
from . import ports

if TYPE_CHECKING:
    from ..manager import Check, Manager


def run_checks(manager: Manager) -> list[Check]:
    from ..manager import Check

    checks: list[Check] = []
    settings = manager.settings

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
        found = binaries.find_binary(settings)
        checks.append(
            Check("binary", True, f"opencode {found.version} at {found.path} (from {found.source})")
        )
    except OcmError as exc:
        checks.append(
            Check(
                "binary",
                False,
                str(exc),
                fix=f"run `ocm install` (needs npm), or set OCM_OPENCODE; need >= "
                f"{MIN_OPENCODE_VERSION}",
            )
        )

    try:
        records = manager.registry.instances()
        migrations = manager.registry.applied_migrations()
        checks.append(
            Check(
                "registry",
                True,
                f"{settings.registry_path}: {len(records)} instance(s), "
                f"{len(migrations)} migration(s) applied",
            )
        )
    except OcmError as exc:
        checks.append(
            Check("registry", False, str(exc), fix="move the file aside; ocm creates a fresh one")
        )
        return checks

    infos = {info.name: info for info in manager.instances(include_foreign=False)}
    for record in records:
        info = infos.get(record.name)
        if info is None or info.status in (Status.STOPPED,):
            continue
        label = f"instance {record.name}"
        if info.status is Status.CRASHED:
            checks.append(
                Check(
                    label,
                    False,
                    f"crashed: {record.error or record.last_exit}",
                    fix=f"`ocm logs {record.name}`, then `ocm restart {record.name}`"
                    f" or `ocm rm {record.name}`",
                    level="warning",
                )
            )
            continue
        if info.status is Status.UNHEALTHY:
            checks.append(
                Check(
                    label,
                    False,
                    "process alive but /global/health fails",
                    fix=f"`ocm restart {record.name}`",
                )
            )
            continue
        if info.supervised is False:
            checks.append(
                Check(
                    label,
                    False,
                    "running without its keeper",
                    fix=f"`ocm restart {record.name}` to supervise it again",
                    level="warning",
                )
            )
        endpoint = manager.endpoint(record)
        if endpoint is not None and info.status is Status.RUNNING:
            checks.append(_auth_check(label, record.spec.auth, endpoint))

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
                    level="warning",
                )
            )
    return checks


def _auth_check(label: str, auth: bool, endpoint: Endpoint) -> Check:
    from ..manager import Check

    anonymous = Endpoint(url=endpoint.url, name=endpoint.name)
    try:
        with OpencodeClient(anonymous, timeout=3.0) as client:
            client.health()
        open_to_all = True
    except ServerError as exc:
        if exc.status_code != 401:
            return Check(
                label, False, f"health check failed: {exc}", fix=f"`ocm restart {endpoint.name}`"
            )
        open_to_all = False
    if auth and open_to_all:
        return Check(
            label,
            False,
            "answers without a password although auth is on",
            fix=f"`ocm restart {endpoint.name}`",
        )
    if auth:
        try:
            with OpencodeClient(endpoint, timeout=3.0) as client:
                client.health()
        except ServerError as exc:
            return Check(
                label,
                False,
                f"our stored password is refused: {exc}",
                fix=f"`ocm restart {endpoint.name}` to hand it the password again",
            )
        return Check(label, True, "healthy; refuses anonymous requests, accepts ours")
    return Check(label, True, "healthy; no password (--no-auth, loopback only)", level="warning")
