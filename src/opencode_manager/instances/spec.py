"""Turning user input into validated instance specs (pure: no processes, no network)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import BinaryError, UsageError
from ..lines import line_of
from ..models import InstanceSpec
from ..supervision import DEFAULTS, RestartPolicy

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,62}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
GENERATED_PREFIX = "oc-"
#: Variables a user may not set with --env: they carry our credentials or isolation. (2.x
#: reads OPENCODE_PASSWORD before OPENCODE_SERVER_PASSWORD: one would lock ocm out.)
RESERVED_ENV = frozenset(
    {"OPENCODE_SERVER_PASSWORD", "OPENCODE_SERVER_USERNAME", "OPENCODE_PASSWORD"}
)


def parse_port(value: str | int, *, what: str = "port") -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        raise UsageError(f"invalid {what} {value!r}: expected a number from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise UsageError(f"invalid {what} {port}: expected a number from 1 to 65535")
    return port


def parse_port_range(value: str) -> tuple[int, int]:
    parts = value.split("-")
    if len(parts) != 2:
        raise UsageError(f"invalid port range {value!r}: expected A-B, e.g. 4100-4199")
    low = parse_port(parts[0], what="port range start")
    high = parse_port(parts[1], what="port range end")
    if low > high:
        raise UsageError(f"invalid port range {value!r}: start is above end")
    return low, high


def parse_env(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"invalid --env {item!r}: expected KEY=VALUE")
        if not _ENV_KEY_RE.match(key):
            raise UsageError(f"invalid --env {item!r}: {key!r} is not a variable name")
        if key in RESERVED_ENV:
            raise UsageError(
                f"--env {key} is not allowed: ocm generates and passes the server password "
                "itself (use --no-auth on loopback to run without one)"
            )
        if key == "OPENCODE_PURE":
            raise UsageError(
                "--env OPENCODE_PURE is not allowed: it turns off the plugin that keeps the "
                "server password away from the agent's tools"
            )
        if key == "OPENCODE_CONFIG_CONTENT":
            _check_config_content(item, value)
        pairs.append((key, value))
    return tuple(pairs)


def _check_config_content(item: str, value: str) -> None:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise UsageError(
            f"invalid --env OPENCODE_CONFIG_CONTENT: not JSON ({exc.args[0]})"
        ) from None
    if not isinstance(parsed, dict):
        raise UsageError("invalid --env OPENCODE_CONFIG_CONTENT: expected a JSON object")


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UsageError(f"invalid instance name {name!r}: {name_problem(name)}")
    return name


def name_problem(name: str) -> str:
    """What is wrong with a name NAME_RE refuses, naming the culprit (pure): `'é' is not
    allowed` says more than the rule alone (a name becomes a directory, a systemd unit, a
    hostname-like label: ASCII only)."""
    rule = (
        "names are ASCII letters, digits, '.', '_' and '-', a letter first, at most 63 characters"
    )
    if not name:
        return f"empty; {rule}"
    if len(name) > 63:
        return f"{len(name)} characters; {rule}"
    bad = next((c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))), None)
    if bad is not None:
        return f"{bad!r} is not allowed; {rule}"
    return f"it must start with a letter; {rule}"


def is_loopback_host(hostname: str) -> bool:
    return hostname in ("localhost", "::1", "[::1]") or hostname.startswith("127.")


def build_specs(
    *,
    name: str | None,
    count: int,
    directory: str | None,
    port: int | None = None,
    port_range: tuple[int, int] | None = None,
    hostname: str = "127.0.0.1",
    cors: Sequence[str] = (),
    log_level: str | None = None,
    env: Sequence[str] = (),
    auth: bool = True,
    shared_data: bool = False,
    cwd: str | None = None,
    supervision: Supervision | None = None,
    binary: str | None = None,
) -> list[InstanceSpec]:
    """Validate a start request and expand it into one spec per instance.

    Names of generated instances are left empty ("") and assigned by the registry, which can
    see which names are taken.
    """
    if count < 1:
        raise UsageError(f"invalid -n {count}: start at least 1 instance")
    if count > 64:
        raise UsageError(f"invalid -n {count}: at most 64 instances per command")
    if port is not None and port_range is not None:
        raise UsageError("--port and --port-range are mutually exclusive")
    if port is not None and count > 1:
        raise UsageError(f"--port {port} gives one instance a fixed port; use --port-range for -n")
    if port_range is not None and port_range[1] - port_range[0] + 1 < count:
        raise UsageError(f"port range {port_range[0]}-{port_range[1]} is smaller than -n {count}")
    if not hostname or any(c.isspace() for c in hostname):
        raise UsageError(f"invalid --hostname {hostname!r}")
    if not auth and not is_loopback_host(hostname):
        raise UsageError(
            f"refusing --no-auth on {hostname}: a server reachable from other machines must "
            "have a password (drop --no-auth, or bind 127.0.0.1)"
        )
    if log_level is not None and log_level.upper() not in LOG_LEVELS:
        raise UsageError(f"invalid --log-level {log_level!r}: choose from {', '.join(LOG_LEVELS)}")
    base = Path(cwd or os.getcwd())
    project = (base / directory).resolve() if directory else base.resolve()
    if not project.exists():
        raise UsageError(f"--dir {directory}: no such directory")
    if not project.is_dir():
        raise UsageError(f"--dir {directory}: not a directory")
    env_pairs = parse_env(env)
    chosen = parse_binary(binary, base) if binary is not None else None
    if name is not None:
        validate_name(name)
    names = [""] * count
    if name is not None:
        names = [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]
    for origin in cors:
        if not origin or any(c.isspace() for c in origin):
            raise UsageError(f"invalid --cors origin {origin!r}")
    extra = (supervision or Supervision()).validated()
    return [
        InstanceSpec(
            name=n,
            dir=str(project),
            port=port,
            port_range=port_range,
            hostname=hostname,
            cors=tuple(cors),
            log_level=log_level.upper() if log_level else None,
            env=env_pairs,
            auth=auth,
            shared_data=shared_data,
            binary=chosen,
            **extra,
        )
        for n in names
    ]


def parse_binary(value: str, base: Path) -> str:
    """An instance's `--opencode`: a version (`2.1.2`, installed with `ocm install`), kept
    as it is, or a path, made absolute against `base` so a restart from elsewhere finds it.
    A version of no supported line is refused here, before anything starts."""
    text = value.strip()
    if not text:
        raise UsageError("invalid --opencode '': give a version (e.g. 2.1.2) or a path")
    if _VERSION_RE.match(text):
        try:
            line_of(text)
        except BinaryError as exc:
            raise UsageError(f"invalid --opencode {text}: {exc.message}") from None
        return text
    return str((base / Path(text).expanduser()).absolute())


@dataclass(frozen=True)
class Supervision:
    """Supervision options of `ocm start` (see supervision.py for what they mean, and for
    their defaults: `supervision.DEFAULTS`)."""

    restart: str = DEFAULTS.policy.value  # a RestartPolicy's word, as given
    max_restarts: int = DEFAULTS.max_restarts
    restart_window: float = DEFAULTS.window
    health_interval: float = DEFAULTS.health_interval
    max_memory: int | None = DEFAULTS.max_memory
    max_age: float | None = DEFAULTS.max_age
    log_max_size: int = DEFAULTS.log_max_size
    log_keep: int = DEFAULTS.log_keep
    # the keeper warms the server up before it reports it running (keeper/warmup.py)
    warm: bool = True

    def validated(self) -> dict[str, Any]:
        if self.restart not in RESTART_POLICIES:
            raise UsageError(
                f"invalid --restart {self.restart!r}: choose from {', '.join(RESTART_POLICIES)}"
            )
        if self.max_restarts < 1:
            raise UsageError(f"invalid --max-restarts {self.max_restarts}: must be 1 or more")
        if self.restart_window <= 0:
            raise UsageError("invalid --restart-window: must be above 0")
        if not 0.2 <= self.health_interval <= 3600:
            raise UsageError(
                f"invalid --health-interval {self.health_interval:g}: use 0.2 to 3600 seconds"
            )
        if self.max_memory is not None and self.max_memory < 64 * 1024 * 1024:
            raise UsageError("invalid --max-memory: below 64M no OpenCode server can run")
        if self.max_age is not None and self.max_age < 10:
            raise UsageError("invalid --max-age: at least 10 s")
        if self.log_max_size < 1024:
            raise UsageError("invalid --log-max-size: at least 1k")
        if not 0 <= self.log_keep <= 1000:
            raise UsageError(f"invalid --log-keep {self.log_keep}: use 0 to 1000")
        return asdict(self)


RESTART_POLICIES = tuple(policy.value for policy in RestartPolicy)  # never, on-failure, always


def next_generated_names(taken: set[str], count: int) -> list[str]:
    """The lowest free `oc-N` names."""
    names: list[str] = []
    n = 1
    while len(names) < count:
        candidate = f"{GENERATED_PREFIX}{n}"
        if candidate not in taken:
            names.append(candidate)
        n += 1
    return names
