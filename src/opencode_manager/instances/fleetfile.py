"""The fleet file `ocm.toml`: a project's instances declared in TOML, read and validated (pure).

    [project]          name (default: the name of the file's directory)
    [defaults]         any instance key, for every instance and group
    [instance.NAME]    one instance, NAME
    [group.NAME]       `count` instances, NAME-1 .. NAME-N
    [limits]           provider limits for the whole fleet, as `ocm limits set`:
                       anthropic = { concurrency = 8, rpm = 50 }
                       "anthropic/claude-opus-4" = { concurrency = 2 }

The instance keys are the options of `ocm start`, and their values go through the same
validation (spec.build_specs, Supervision.validated): an instance from the file gets the spec
the same command line would give. A relative `dir` is relative to the file; `env` tables merge
over the defaults' key by key, every other key replaces the default; `config` is an inline
OpenCode config, passed as OPENCODE_CONFIG_CONTENT; `model` and `agent` are defaults for tasks;
`opencode` chooses the instance's binary: a version `ocm install --version` put in $OCM_HOME
(`"2.1.2"`), or a path (relative to the file), so one file can mix OpenCode 1.x and 2.x.

The whole file is checked before anything starts, and every error names the file, the line and
the key, all of them at once:

    ocm.toml:12: [group.worker] port_range: invalid port range '4300-4200': start is above end

tomllib reports no positions for values, so `key_lines` finds them in the text: table headers
and `key =` lines. What it cannot place falls back to the header of its table.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..durations import parse_duration, parse_size
from ..errors import UsageError
from ..limits.policy import Limit, parse_scope
from ..models import InstanceSpec
from .spec import (
    NAME_RE,
    Supervision,
    build_specs,
    parse_binary,
    parse_env,
    parse_port,
    parse_port_range,
    validate_name,
)
from .tomlpos import context_at, key_lines, line_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the same parser, as a package
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

FLEET_FILE = "ocm.toml"
MAX_COUNT = 64  # as `ocm start -n`
TABLES = ("project", "defaults", "instance", "group", "limits")
LIMIT_KEYS = ("concurrency", "rpm")
SUPERVISION_KEYS = tuple(Supervision.__dataclass_fields__)
INSTANCE_KEYS = (
    "dir", "port", "port_range", "hostname", "cors", "env", "auth", "log_level",
    *SUPERVISION_KEYS, "shared_data", "config", "model", "agent", "opencode",
)  # fmt: skip
GROUP_KEYS = (*INSTANCE_KEYS, "count")
CONFIG_VARIABLE = "OPENCODE_CONFIG_CONTENT"


@dataclass(frozen=True)
class Desired:
    """One instance the file asks for."""

    name: str  # "web", "worker-1", ...
    spec: InstanceSpec  # effective: defaults merged, validated (spec.name == name)
    group: str | None  # "worker" for the members of [group.worker]
    model: str | None  # task defaults (also on the spec)
    agent: str | None
    line: int  # the line of its [instance.X] / [group.X] header


@dataclass(frozen=True)
class FleetFile:
    path: Path
    project: str
    instances: tuple[Desired, ...]  # in the order of the file
    limits: tuple[Limit, ...] = ()  # [limits], in the order of the file (`ocm up` sets them)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a fleet file."""

    line: int | None  # None: the file as a whole
    table: str | None  # "group.worker", "defaults"; None outside any table
    key: str | None  # "port", "env.LOG"
    message: str

    def render(self, source: str) -> str:
        where = " ".join(p for p in (f"[{self.table}]" if self.table else "", self.key) if p)
        at = f"{source}:{self.line}" if self.line is not None else source
        return f"{at}: {where}: {self.message}" if where else f"{at}: {self.message}"


class FleetFileError(UsageError):
    """A fleet file that cannot be used: one line per problem, in the order of the file."""

    def __init__(self, path: Path, problems: Sequence[Problem]) -> None:
        ordered = tuple(dict.fromkeys(sorted(problems, key=lambda p: p.line or 0)))
        super().__init__("\n".join(p.render(str(path)) for p in ordered))
        self.path = path
        self.problems = ordered


def find_fleet_file(cwd: Path, given: str | None = None) -> Path:
    """`given` (-f FILE, or a directory holding ocm.toml) relative to `cwd`, else ./ocm.toml."""
    if given is None:
        path = cwd / FLEET_FILE
        if not path.is_file():
            raise UsageError(
                f"no {FLEET_FILE} in {cwd.resolve()}: write one, or name it with -f FILE"
            )
        return path
    path = cwd / given
    if path.is_dir():
        path = path / FLEET_FILE
        if not path.is_file():
            raise UsageError(f"-f {given}: a directory without {FLEET_FILE}")
    elif not path.exists():
        raise UsageError(f"-f {given}: no such file ({path.resolve()})")
    elif not path.is_file():
        raise UsageError(f"-f {given}: not a file")
    return path


def read_fleet_file(given: str | None = None) -> FleetFile:
    """The fleet file a command names (-f FILE, or a directory holding ocm.toml), else the
    current directory's ocm.toml, read and validated."""
    return load_fleet_file(find_fleet_file(Path("."), given))


def load_fleet_file(path: Path) -> FleetFile:
    """Read and validate the fleet file at `path`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = Problem(None, None, None, f"cannot read: {exc.strerror}")
        raise FleetFileError(path, [problem]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FleetFileError(path, [Problem(line, None, None, "not UTF-8 text")]) from None
    return parse_fleet_file(text, path)


def parse_fleet_file(text: str, path: Path) -> FleetFile:
    """The fleet file in `text`; `path` names it in errors and anchors relative dirs."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetFileError(path, [_syntax_problem(text, str(exc))]) from None
    return _Reader(text, path, data).read()


_TOML_ERROR_RE = re.compile(r"^(.*) \(at (?:line (\d+), column (\d+)|end of document)\)$", re.S)


def _syntax_problem(text: str, error: str) -> Problem:
    """tomllib's "Invalid value (at line 3, column 8)", placed like every other problem."""
    match = _TOML_ERROR_RE.match(error)
    if match is None:
        return Problem(None, None, None, f"invalid TOML: {error}")
    reason, line, column = match.groups()
    number = int(line) if line else text.rstrip().count("\n") + 1
    table, key = context_at(text, number)
    where = f" (column {column})" if column else ""
    return Problem(number, ".".join(table) or None, key, f"invalid TOML: {reason}{where}")


# -- values ---------------------------------------------------------------------------------


class _Bad(Exception):
    """A value that cannot be used."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"{'integer' if isinstance(value, int) else 'float'} {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {json.dumps(shown)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a date/time {value}"


def _expected(what: str, value: Any) -> _Bad:
    return _Bad(f"expected {what}, got {_kind(value)}")


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value)
    if not value.strip():
        raise _Bad("must not be empty")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected("an integer", value)
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _expected("true or false", value)
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _expected('seconds (a number) or a duration like "60s" or "5m"', value)
    return float(value)


def _bytes(value: Any) -> int:
    if isinstance(value, str):
        return parse_size(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected('bytes (an integer) or a size like "1500M"', value)
    return value


_FLAG_RE = re.compile(r"--([a-z]+(?:-[a-z]+)*)")
_COUNT_RE = re.compile(r"(?<![\w-])-n\b")


def _file_words(message: str) -> str:
    """build_specs speaks in `ocm start` options; say the same in the file's keys."""
    text = message.replace("--no-auth", "auth = false").replace("per command", "per group")
    text = text.replace("for -n", "for count > 1")
    text = _COUNT_RE.sub("count", text)
    return _FLAG_RE.sub(lambda m: m.group(1).replace("-", "_"), text)


def _key_in(message: str) -> str | None:
    """The file key a build_specs message is about."""
    if message.startswith("port range"):
        return "port_range"
    if "--no-auth" in message:
        return "auth"
    flag = _FLAG_RE.search(message)
    if flag:
        return flag.group(1).replace("-", "_")
    return "count" if _COUNT_RE.search(message) else None


# -- the file -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    path: tuple[str, ...]  # ("defaults",), ("group", "worker")
    values: dict[str, Any]  # converted
    ok: bool

    @property
    def label(self) -> str:
        return ".".join(self.path)


class _Reader:
    def __init__(self, text: str, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.base = path.parent
        self.data = data
        self.lines = key_lines(text)
        self.problems: list[Problem] = []

    def problem(self, path: tuple[str, ...], key: str | None, message: str) -> None:
        table = ".".join(path[:2] if path[:1] in (("instance",), ("group",)) else path[:1])
        self.problems.append(Problem(line_of(self.lines, path), table or None, key, message))

    def read(self) -> FleetFile:
        for name, value in self.data.items():
            if name not in TABLES:
                self._unknown((), name, TABLES, value)
        project = self._project()
        defaults = _Table(("defaults",), {}, ok=True)
        if "defaults" in self.data:
            defaults = self._table(("defaults",), self.data["defaults"], INSTANCE_KEYS)
        tables = [t for kind in ("instance", "group") for t in self._members(kind)]
        built = [item for t in tables if t.ok and defaults.ok for item in self._expand(t, defaults)]
        self._check_fleet(built)
        limits = self._limits()
        if not tables and not limits and not self.problems:
            self.problems.append(
                Problem(None, None, None, "no instances: add [instance.NAME] or [group.NAME]")
            )
        if self.problems:
            raise FleetFileError(self.path, self.problems)
        desired = sorted((b.desired for b in built), key=lambda d: d.line)  # stable sort
        return FleetFile(self.path, project, tuple(desired), tuple(limits))

    def _limits(self) -> list[Limit]:
        """[limits]: SCOPE = { concurrency = N, rpm = N }, each checked as `ocm limits set`."""
        raw = self.data.get("limits")
        if raw is None:
            return []
        if not isinstance(raw, dict):
            self.problem(("limits",), None, f"expected a table, got {_kind(raw)}")
            return []
        found = []
        for scope_text, body in raw.items():
            where = ("limits", scope_text)
            try:
                scope = parse_scope(scope_text)
            except UsageError as exc:
                self.problem(where, scope_text, exc.message)
                continue
            if not isinstance(body, dict):
                got = f"expected a table like {{ concurrency = 4, rpm = 60 }}, got {_kind(body)}"
                self.problem(where, scope_text, got)
                continue
            caps: dict[str, int] = {}
            for key, value in body.items():
                if key not in LIMIT_KEYS:
                    close = difflib.get_close_matches(key, LIMIT_KEYS, n=1)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    if isinstance(value, dict):  # anthropic.claude = {...}: a dotted key
                        hint = f' (a model\'s limit is written "{scope_text}/{key}" = {{ ... }})'
                    self.problem((*where, key), f"{scope_text}.{key}", f"unknown key{hint}")
                elif isinstance(value, bool) or not isinstance(value, int):
                    self.problem(
                        (*where, key), f"{scope_text}.{key}", _expected("an integer", value).message
                    )
                elif value < 1:
                    self.problem(
                        (*where, key), f"{scope_text}.{key}", f"must be 1 or more, got {value}"
                    )
                else:
                    caps[key] = value
            if len(caps) != len(body):
                continue
            if not caps:
                self.problem(where, scope_text, "give concurrency and/or rpm")
                continue
            found.append(Limit(scope, caps.get("concurrency"), caps.get("rpm")))
        return found

    def _unknown(self, table: tuple[str, ...], key: str, known: Sequence[str], value: Any) -> None:
        close = difflib.get_close_matches(key, known, n=1)
        line = line_of(self.lines, (*table, key))
        if table:
            hint = f" (did you mean {close[0]}?)" if close else ""
            if key == "count":
                hint = " (only a [group.NAME] has a count)"
            self.problem((*table, key), key, f"unknown key{hint}")
        elif isinstance(value, dict):
            hint = f" (did you mean [{close[0]}]?)" if close else ""
            self.problems.append(Problem(line, key, None, f"unknown table{hint}"))
        else:
            hint = " outside any table"
            if key in GROUP_KEYS:
                hint += ": instance keys go in [defaults], [instance.NAME] or [group.NAME]"
            self.problems.append(Problem(line, None, key, f"unknown key{hint}"))

    def _project(self) -> str:
        default = self.path.resolve().parent.name or "default"
        raw = self.data.get("project")
        if raw is None:
            return default
        if not isinstance(raw, dict):
            self.problem(("project",), None, f"expected a table, got {_kind(raw)}")
            return default
        for key in raw:
            if key != "name":
                self._unknown(("project",), key, ("name",), raw[key])
        if "name" not in raw:
            return default
        name = raw["name"]
        if not isinstance(name, str):
            self.problem(("project", "name"), "name", _expected("a string", name).message)
        elif not NAME_RE.match(name):
            self.problem(
                ("project", "name"),
                "name",
                f"invalid project name {name!r}: use a letter first, then letters, digits, "
                "'.', '_' or '-' (at most 63 characters)",
            )
        else:
            return name
        return default

    def _members(self, kind: str) -> list[_Table]:
        raw = self.data.get(kind)
        if raw is None:
            return []
        if not isinstance(raw, dict):
            self.problem((kind,), None, f"expected [{kind}.NAME] tables, got {_kind(raw)}")
            return []
        tables = []
        for name, body in raw.items():
            path = (kind, name)
            if not isinstance(body, dict):
                hint = f" (keys go in [{kind}.NAME], not [{kind}])" if name in GROUP_KEYS else ""
                got = f"expected a table [{kind}.{name}], got {_kind(body)}{hint}"
                self.problem(path, None, got)
                continue
            table = self._table(path, body, GROUP_KEYS if kind == "group" else INSTANCE_KEYS)
            try:
                validate_name(name)
                if kind == "group":
                    validate_name(f"{name}-{table.values.get('count', 1)}")
            except UsageError as exc:
                self.problem(path, None, exc.message)
                table = replace(table, ok=False)
            tables.append(table)
        return tables

    def _table(self, path: tuple[str, ...], raw: Any, known: Sequence[str]) -> _Table:
        if not isinstance(raw, dict):
            self.problem(path, None, f"expected a table, got {_kind(raw)}")
            return _Table(path, {}, ok=False)
        values: dict[str, Any] = {}
        ok = True
        for key, value in raw.items():
            if key not in known:
                self._unknown(path, key, known, value)
                ok = False
                continue
            if key == "env":
                env = self._env(path, value)
                ok = ok and env is not None
                values[key] = env
                continue
            try:
                values[key] = self._value(key, value)
            except _Bad as bad:
                self.problem((*path, key), key, bad.message)
                ok = False
            except UsageError as exc:
                self.problem((*path, key), key, _file_words(exc.message))
                ok = False
        return _Table(path, values, ok)

    def _env(self, path: tuple[str, ...], value: Any) -> dict[str, str] | None:
        """The env table, each variable checked as `--env` checks it; None if one is wrong."""
        if not isinstance(value, dict):
            self.problem((*path, "env"), "env", _expected("a table of strings", value).message)
            return None
        env: dict[str, str] = {}
        for name, item in value.items():
            where = (*path, "env", name)
            if not isinstance(item, str):
                self.problem(where, f"env.{name}", _expected("a string", item).message)
                continue
            try:
                parse_env([f"{name}={item}"])
            except UsageError as exc:
                self.problem(where, f"env.{name}", _file_words(exc.message))
                continue
            env[name] = item
        return env if len(env) == len(value) else None

    def _value(self, key: str, value: Any) -> Any:
        """The value of one key, checked on its own as `ocm start` would check it."""
        if key == "count":
            count = _integer(value)
            if not 1 <= count <= MAX_COUNT:
                raise _Bad(f"invalid count {count}: use 1 to {MAX_COUNT}")
            return count
        if key == "port":
            return parse_port(_integer(value))
        if key == "port_range":
            return parse_port_range(_string(value))
        if key in ("auth", "shared_data", "warm"):
            return _boolean(value)
        if key == "cors":
            if not isinstance(value, list):
                raise _expected("an array of strings", value)
            for origin in value:
                if not isinstance(origin, str):
                    raise _expected("an array of strings", origin)
            self._alone("cors", tuple(value))
            return tuple(value)
        if key in ("dir", "hostname", "log_level"):
            self._alone(key, _string(value))
            return value
        if key == "opencode":
            return parse_binary(_string(value), self.base)
        if key in SUPERVISION_KEYS:
            if key == "restart":
                converted: Any = _string(value)
            elif key in ("max_restarts", "log_keep"):
                converted = _integer(value)
            elif key in ("max_memory", "log_max_size"):
                converted = _bytes(value)
            else:
                converted = _seconds(value)
            Supervision(**{key: converted}).validated()
            return converted
        if key == "config":
            if not isinstance(value, dict):
                raise _expected("a table (an OpenCode config)", value)
            try:
                return json.dumps(value)
            except TypeError:
                raise _Bad("dates and times have no JSON form: write them as strings") from None
        if key == "model":
            model = _string(value)
            provider, _, name = model.partition("/")
            if not provider or not name:
                raise _Bad(f"invalid model {model!r}: expected PROVIDER/MODEL")
            return model
        return _string(value)  # agent

    def _alone(self, key: str, value: Any) -> None:
        """build_specs on this one key: the same checks, the same messages."""
        options: dict[str, Any] = {"name": None, "count": 1, "directory": None, "cwd": "/"}
        if key == "dir":
            options.update(directory=value, cwd=str(self.base))
        else:
            options[key] = value  # the directory checked is "/", which is always there
        build_specs(**options)

    def _expand(self, table: _Table, defaults: _Table) -> list[_Built]:
        """The instances of one table, as `ocm start` would build them."""
        values = {**defaults.values, **table.values}
        origin = {key: (table if key in table.values else defaults) for key in values}
        env = {**defaults.values.get("env", {}), **table.values.get("env", {})}
        if "config" in values:
            if CONFIG_VARIABLE in env:
                mine = CONFIG_VARIABLE in table.values.get("env", {})
                line = line_of(self.lines, (*(table if mine else defaults).path, "env"))
                message = f"env also sets {CONFIG_VARIABLE} (line {line}): set one or the other"
                self._for(table, origin["config"], "config", message)
                return []
            env[CONFIG_VARIABLE] = values["config"]
        kind, name = table.path
        count = values.get("count", 1)
        supervision = Supervision(**{k: values[k] for k in SUPERVISION_KEYS if k in values})
        try:
            specs = build_specs(
                name=name,
                count=count,
                directory=values.get("dir"),
                port=values.get("port"),
                port_range=values.get("port_range"),
                hostname=values.get("hostname", "127.0.0.1"),
                cors=values.get("cors", ()),
                log_level=values.get("log_level"),
                env=[f"{k}={v}" for k, v in env.items()],
                auth=values.get("auth", True),
                shared_data=values.get("shared_data", False),
                cwd=str(self.base),
                supervision=supervision,
                binary=values.get("opencode"),
            )
        except UsageError as exc:
            key = _key_in(exc.message)
            self._for(table, origin.get(key or "", table), key, _file_words(exc.message))
            return []
        if kind == "group" and count == 1:
            specs = [replace(specs[0], name=f"{name}-1")]  # a group's members are numbered
        model, agent = values.get("model"), values.get("agent")
        line = line_of(self.lines, table.path)
        group = name if kind == "group" else None
        return [
            _Built(
                Desired(s.name, replace(s, model=model, agent=agent), group, model, agent, line),
                table,
                origin,
            )
            for s in specs
        ]

    def _for(self, table: _Table, origin: _Table, key: str | None, message: str) -> None:
        """A problem of `table`'s instances, at the key where it was written."""
        if origin is not table:
            message += f" (for [{table.label}])"
        self.problem(origin.path + ((key,) if key else ()), key, message)

    def _check_fleet(self, built: list[_Built]) -> None:
        """What no single table shows: names and fixed ports used twice."""
        names: dict[str, _Built] = {}
        ports: dict[int, _Built] = {}
        for item in sorted(built, key=lambda b: b.desired.line):
            desired = item.desired
            first = names.setdefault(desired.name, item)
            if first is not item:
                self.problem(
                    item.table.path,
                    None,
                    f"{desired.name} is already declared by [{first.table.label}] "
                    f"(line {first.desired.line})",
                )
            port = desired.spec.port
            if port is not None and ports.setdefault(port, item) is not item:
                other = ports[port]
                line = line_of(self.lines, (*other.origin["port"].path, "port"))
                message = f"{port} is also the port of {other.desired.name} (line {line})"
                self._for(item.table, item.origin["port"], "port", message)


@dataclass(frozen=True)
class _Built:
    desired: Desired
    table: _Table  # the [instance.X] or [group.X] it comes from
    origin: dict[str, _Table]  # where each of its keys was written: that table or [defaults]
