"""Systemd user units that bring instances back after a reboot (`ocm export systemd`).

Pure text generation plus one writer: ocm never runs `systemctl` itself, it prints the
commands (like `pm2 startup`), because enabling units and lingering are the user's decisions.

Why the units look as they do:

* ``Type=oneshot`` with ``RemainAfterExit=yes``, and ocm on both ends: ``ExecStart=ocm restart
  NAME`` (the stored spec, same password and data; the registry is the source of truth, so the
  unit names the instance and nothing else) and ``ExecStop=-ocm stop NAME`` (graceful, and it
  works whoever started the instance). ``Type=forking`` would make the keeper systemd's main
  process, and two supervisors would fight: a keeper killed on purpose (its server is meant to
  outlive it) would take the whole unit down, a hand-run `ocm restart` would look like a crash,
  and a systemd ``Restart=`` would bypass the keeper's backoff and flapping limit. So the keeper
  applies the instance's restart policy while it runs, and the unit only brings it back at
  boot (with lingering) or login, and stops it with the unit.
* The keeper ocm launches stays in the unit's cgroup (a new session is not a new cgroup), so
  with ``KillMode=control-group`` whatever ``ocm stop`` left behind goes with the unit.
* No ``Restart=``: systemd before 244 refuses to load a oneshot unit with one.
* No ``After=network.target``: the user manager has no such unit (user units cannot order
  against system ones), and it starts after the system's network.target anyway.
* ``WorkingDirectory=-DIR``: a project directory that is gone must not stop ocm from saying
  so itself, in the journal.
* Only an allow-list of the caller's environment is written (`unit_environment`): ``PATH``,
  so the opencode binary found by hand is found at boot too (what `pm2 startup` does), and
  the XDG and OCM variables that move state. Never a secret: passwords stay in
  $OCM_HOME/secrets, and the spec's own ``env`` stays in the registry.
* Every value is written with systemd's quoting (systemd.syntax(7)): ``%`` doubled everywhere
  (specifiers), ``$`` doubled in command arguments (variable expansion), C-style quotes where
  a word is not plain. What cannot be written faithfully
  is refused rather than written wrong: a control character anywhere, a quote, a backslash
  or a ``$`` in the program's path, a directory ending in a space or a backslash
  (WorkingDirectory= takes no quotes).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StateError, UsageError
from ..models import InstanceSpec
from . import remote
from .fleet import Fleet
from .fleetfile import read_fleet_file

#: Every unit ocm writes is named ocm-*.service.
PREFIX = "ocm-"
RESURRECT_UNIT = f"{PREFIX}resurrect.service"
#: Above `ocm restart`'s own deadline (120 s to be healthy, +5 s): only a safety net.
INSTANCE_START_TIMEOUT = 180
#: `ocm stop` takes at most about 25 s (ack, 10 s graceful, dispose, port freed).
STOP_TIMEOUT = 60
#: The caller's variables a unit may carry: where binaries are found and where state lives.
#: Nothing else: the environment of a shell holds API keys, and units are world-readable.
CARRIED_VARIABLES = (
    "PATH",
    "OCM_OPENCODE",
    "OCM_REGISTRY_TIMEOUT",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "XDG_CACHE_HOME",
)

_PLAIN = re.compile(r"[A-Za-z0-9_@+=:,./-]+")  # needs no quotes on a systemd command line
_UNIT_CHARS = re.compile(r"[A-Za-z0-9:_.-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_IN_PROGRAM = "\"'\\$"


@dataclass(frozen=True)
class Unit:
    """A unit file: its name (ocm-NAME.service) and its text."""

    name: str
    text: str


# -- the units -----------------------------------------------------------------------------------
def instance_unit(
    spec: InstanceSpec,
    *,
    ocm: Sequence[str],
    home: Path,
    environment: Mapping[str, str] | None = None,
) -> Unit:
    """The unit that starts one instance at boot/login and stops it with the unit."""
    name = spec.name
    unit = f"{PREFIX}{_unit_component(name)}.service"
    project = f", project {spec.project}" if spec.project else ""
    return Unit(
        unit,
        _render(
            unit,
            header=(
                f"OpenCode instance {name}{project}. Its settings live in the ocm registry, so "
                f"this unit names it and nothing else. Its restart policy ({spec.restart}) is "
                "applied by its keeper while it runs; this unit brings it back at boot (with "
                "lingering) or login, and stops it gracefully with the unit."
            ),
            description=f"OpenCode instance {name} (ocm{project})",
            directory=Path(spec.dir),
            # Starts it with its stored spec when it is not running; leaves a running one be.
            start=[*ocm, "start", "--existing", name],
            stop=[*ocm, "stop", name],
            ocm=ocm,
            home=home,
            environment=environment,
            start_timeout=str(INSTANCE_START_TIMEOUT),
        ),
    )


def resurrect_unit(
    *, ocm: Sequence[str], home: Path, environment: Mapping[str, str] | None = None
) -> Unit:
    """One unit for the whole saved fleet: `ocm resurrect` at boot, `ocm stop --all` at stop."""
    return Unit(
        RESURRECT_UNIT,
        _render(
            RESURRECT_UNIT,
            header=(
                "Starts what `ocm save` recorded in OCM_HOME/dump.json and is not running, and "
                "stops every instance with the unit (like `pm2 kill`). Each keeper applies its "
                "instance's restart policy while it runs. Use this or per-instance units, not "
                "both."
            ),
            description="OpenCode instances saved by ocm save (ocm resurrect)",
            directory=None,
            start=[*ocm, "resurrect"],
            stop=[*ocm, "stop", "--all"],
            ocm=ocm,
            home=home,
            environment=environment,
            start_timeout="infinity",  # many instances; ocm bounds each start itself
        ),
    )


def fleet_unit(
    file: Path,
    project: str,
    *,
    ocm: Sequence[str],
    home: Path,
    environment: Mapping[str, str] | None = None,
) -> Unit:
    """One unit for a fleet file's project: `ocm up -f FILE` (starts what is not running, bounces
    nothing unchanged) and `ocm down -f FILE`."""
    file = _absolute(file, "fleet file")
    unit = f"{PREFIX}fleet-{_unit_component(project)}.service"
    return Unit(
        unit,
        _render(
            unit,
            header=(
                f"The fleet of project {project}, as {file.name} describes it: `ocm up` at boot "
                "(creates what is missing, starts what is stopped, leaves running instances "
                "alone unless the file changed them), `ocm down` at stop. Each keeper applies "
                "its instance's restart policy while it runs."
            ),
            description=f"OpenCode fleet {project} (ocm up)",
            directory=file.parent,
            start=[*ocm, "up", "-f", str(file)],
            stop=[*ocm, "down", "-f", str(file)],
            ocm=ocm,
            home=home,
            environment=environment,
            start_timeout="infinity",  # recreates run one at a time; ocm bounds each start
        ),
    )


def _render(
    unit: str,
    *,
    header: str,
    description: str,
    directory: Path | None,
    start: Sequence[str],
    stop: Sequence[str],
    ocm: Sequence[str],
    home: Path,
    environment: Mapping[str, str] | None,
    start_timeout: str,
) -> str:
    if not ocm or not Path(ocm[0]).is_absolute():
        raise UsageError(f"the ocm command must start with an absolute path, got {list(ocm)!r}")
    home = _absolute(home, "OCM_HOME")
    variables = {"OCM_HOME": str(home)}
    for key, value in (environment or {}).items():
        if key not in CARRIED_VARIABLES:
            raise UsageError(f"{key} cannot go in a unit: only {', '.join(CARRIED_VARIABLES)}")
        variables.setdefault(key, value)
    lines = [
        f"# {unit}: generated by `ocm export systemd`; export again rather than edit.",
        *(f"# {line}" for line in textwrap.wrap(_checked(header, "name"), 94)),
        "",
        "[Unit]",
        f"Description={_specifiers(_checked(description, 'description'))}",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        *(f"Environment={_assignment(k, v)}" for k, v in variables.items()),
    ]
    if directory is not None:
        lines.append(f"WorkingDirectory=-{_directory(directory)}")
    lines += [
        f"ExecStart={_command(start)}",
        f"ExecStop=-{_command(stop)}",  # `-`: nothing left to stop is not a failure
        "KillMode=control-group",
        f"TimeoutStartSec={start_timeout}",
        f"TimeoutStopSec={STOP_TIMEOUT}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def unit_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of `environ` a unit should carry (CARRIED_VARIABLES that are set)."""
    return {key: environ[key] for key in CARRIED_VARIABLES if environ.get(key)}


# -- where and how -------------------------------------------------------------------------------
def ocm_command(executable: str | None = None) -> list[str]:
    """How a unit runs this ocm, absolute: the console script next to the running Python (its
    virtualenv's `ocm`), else that Python with `-m opencode_manager`."""
    python = sys.executable if executable is None else executable
    if not python:
        raise StateError("cannot tell which Python runs ocm (sys.executable is empty)")
    # Not resolved: a virtualenv's python is a symlink, and its scripts sit next to the link.
    path = Path(python).absolute()
    script = path.with_name("ocm")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(path), "-m", "opencode_manager"]


def default_unit_dir(environ: Mapping[str, str]) -> Path:
    """Where systemd looks for a user's own units: $XDG_CONFIG_HOME/systemd/user, by default
    ~/.config/systemd/user (a relative XDG_CONFIG_HOME is ignored, as the spec says)."""
    config = environ.get("XDG_CONFIG_HOME", "")
    if not config or not os.path.isabs(config):
        home = environ.get("HOME") or str(Path.home())
        config = os.path.join(home, ".config")
    return Path(config) / "systemd" / "user"


def write_units(units: Sequence[Unit], directory: Path) -> list[Path]:
    """Write each unit to `directory` (created if needed), atomically and 0644."""
    names = [unit.name for unit in units]
    for name in names:
        if "/" in name or not name.endswith(".service") or names.count(name) > 1:
            raise UsageError(f"bad or repeated unit name {name!r}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    return [_write(directory / unit.name, unit.text) for unit in units]


def _write(path: Path, text: str) -> Path:
    # A unit is read by the user's manager at any time: it must never see half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o644)  # whatever the umask
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StateError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def enable_commands(
    units: Sequence[Unit], *, directory: Path | None = None, user: str | None = None
) -> list[str]:
    """What the user runs to enable the units, and to keep their manager up without a login.

    `directory`: where the units were written when that is not a directory systemd searches
    (`--dir`); they are then enabled by path, which links them in."""
    if not units:
        return []
    targets = [str(directory / u.name) if directory is not None else u.name for u in units]
    return [
        "systemctl --user daemon-reload",
        "systemctl --user enable " + " ".join(shlex.quote(t) for t in targets),
        f"loginctl enable-linger {shlex.quote(user or _user())}",
    ]


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry (some containers): loginctl takes a UID too
        return str(os.getuid())


# -- systemd's syntax ----------------------------------------------------------------------------
def _checked(value: str, what: str) -> str:
    if _CONTROL.search(value):
        raise UsageError(
            f"{what} {value!r} cannot go in a systemd unit: it has a control character"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} {value!r} cannot go in a systemd unit: not UTF-8") from None
    return value


def _specifiers(text: str) -> str:
    return text.replace("%", "%%")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _word(arg: str) -> str:
    """An argument on ExecStart=/ExecStop=: `%` and `$` doubled, quoted unless plain."""
    text = _specifiers(_checked(arg, "argument")).replace("$", "$$")
    return text if _PLAIN.fullmatch(arg) else _quoted(text)


def _program(path: str) -> str:
    """The program on ExecStart=/ExecStop=. systemd refuses quotes and backslashes in it even
    escaped, and a `$` is literal in the path but expanded in the argv[0] it passes (where
    Python looks for its virtualenv): none of them can be written faithfully."""
    if set(_checked(path, "program")) & set(_NOT_IN_PROGRAM):
        raise UsageError(
            f"program {path!r} cannot go in a systemd unit: it has a quote, a backslash or a "
            "'$'; install ocm in a directory without them"
        )
    text = _specifiers(path)
    return text if _PLAIN.fullmatch(path) else _quoted(text)


def _command(argv: Sequence[str]) -> str:
    return " ".join([_program(argv[0]), *(_word(arg) for arg in argv[1:])])


def _assignment(key: str, value: str) -> str:
    """Environment=KEY=VALUE: `%` doubled; `$` means nothing there; quoted unless plain."""
    text = _specifiers(f"{key}={_checked(value, key)}")
    return text if _PLAIN.fullmatch(f"{key}={value}") else _quoted(text)


def _directory(path: Path) -> str:
    """WorkingDirectory= takes the rest of the line as it is: no quotes, no escapes."""
    value = _checked(str(_absolute(path, "directory")), "directory")
    if value != value.strip() or value.endswith("\\"):
        raise UsageError(
            f"directory {value!r} cannot go in a systemd unit: it ends in a space or a backslash"
        )
    return _specifiers(value)


def _absolute(path: Path, what: str) -> Path:
    if not path.is_absolute():
        raise UsageError(f"{what} {str(path)!r} must be an absolute path in a systemd unit")
    return path


def _unit_component(text: str) -> str:
    """A name as part of a unit name: as is when it is plain, else escaped like systemd-escape."""
    out = []
    for i, char in enumerate(text):
        if _UNIT_CHARS.fullmatch(char) and not (i == 0 and char == "."):
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogateescape"))
    return "".join(out)


@dataclass(frozen=True)
class SystemdExport:
    """What `ocm export systemd` wrote, and what the user runs next."""

    paths: list[str]
    commands: list[str]
    kind: str  # "instances", "resurrect" or "fleet"

    def to_dict(self) -> dict[str, Any]:
        return {"paths": list(self.paths), "commands": list(self.commands), "kind": self.kind}


def export(
    fleet: Fleet,
    refs: Sequence[str] = (),
    *,
    all: bool = False,
    fleet_file: str | None = None,
    directory: str | None = None,
) -> SystemdExport:
    """Write the units for instances (refs), the saved fleet (all: `ocm resurrect`) or a
    fleet file's project (fleet_file: as `ocm up -f` takes it), into `directory` (default:
    the user's unit directory)."""
    found = None
    if fleet_file is not None:
        loaded = read_fleet_file(fleet_file)
        found = (loaded.path.resolve(), loaded.project)
    target = Path(directory).expanduser().resolve() if directory else None
    return _export(fleet, refs, all=all, fleet_file=found, directory=target)


def _export(
    fleet: Fleet,
    refs: Sequence[str],
    *,
    all: bool,
    fleet_file: tuple[Path, str] | None,
    directory: Path | None,
) -> SystemdExport:
    chosen = sum([bool(refs), all, fleet_file is not None])
    if chosen != 1:
        raise UsageError("export what? give instance names, --all, or --fleet FILE (one of them)")
    settings = fleet.settings
    ocm, home = ocm_command(), settings.home
    environment = unit_environment(settings.environ)
    if fleet_file is not None:
        units = [fleet_unit(fleet_file[0], fleet_file[1], ocm=ocm, home=home,
                            environment=environment)]  # fmt: skip
        kind = "fleet"
    elif all:
        units, kind = [resurrect_unit(ocm=ocm, home=home, environment=environment)], "resurrect"
    else:
        records = fleet.resolve_all(refs)
        remote.refuse(records, "write a unit for")
        units = [instance_unit(r.spec, ocm=ocm, home=home, environment=environment)
                 for r in records]  # fmt: skip
        kind = "instances"
    target = directory if directory is not None else default_unit_dir(settings.environ)
    paths = write_units(units, target)
    commands = enable_commands(units, directory=directory)
    return SystemdExport([str(p) for p in paths], commands, kind)
