"""Unit tests: the fleet file ocm.toml, read and validated (pure: no processes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from opencode_manager.durations import parse_size
from opencode_manager.errors import UsageError
from opencode_manager.instances.fleetfile import (
    FLEET_FILE,
    FleetFileError,
    find_fleet_file,
    load_fleet_file,
    parse_fleet_file,
)
from opencode_manager.instances.spec import Supervision, build_specs

EXAMPLE = """\
[project]            # optional; name defaults to the file's directory name
name = "api"

[defaults]           # any instance key; applies to every instance and group
dir = "."            # relative paths are relative to the fleet file's directory
restart = "on-failure"
env = { LOG = "1" }  # a table of strings
model = "anthropic/claude-sonnet-4"   # task defaults for tasks sent to these instances
agent = "build"

[instance.web]       # one instance named "web"
port = 4101
config = { model = "scripted/scripted-model" }   # inline OpenCode config

[group.worker]       # `count` instances named worker-1 .. worker-N
count = 2
port_range = "4200-4299"
env = { QUEUE = "a" }
"""


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in a temp dir, so messages say `ocm.toml:N:` as they do for a user."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def parse(text: str) -> list[str]:
    """The message lines of the error `text` gives."""
    with pytest.raises(FleetFileError) as caught:
        parse_fleet_file(text, Path(FLEET_FILE))
    return str(caught.value).splitlines()


def test_the_example_expands_to_its_instances(tmp_path: Path) -> None:
    path = tmp_path / FLEET_FILE
    path.write_text(EXAMPLE)
    fleet = load_fleet_file(path)
    assert fleet.project == "api"
    assert fleet.path == path
    assert [d.name for d in fleet.instances] == ["web", "worker-1", "worker-2"]
    web, one, two = fleet.instances
    assert (web.group, one.group, two.group) == (None, "worker", "worker")
    assert (web.line, one.line, two.line) == (11, 15, 15)
    assert (web.spec.port, web.spec.port_range) == (4101, None)
    assert (one.spec.port, one.spec.port_range) == (None, (4200, 4299))
    assert two.spec.port_range == (4200, 4299)
    assert dict(web.spec.env) == {
        "LOG": "1",
        "OPENCODE_CONFIG_CONTENT": '{"model": "scripted/scripted-model"}',
    }
    assert json.loads(dict(web.spec.env)["OPENCODE_CONFIG_CONTENT"]) == {
        "model": "scripted/scripted-model"
    }
    assert one.spec.env == (("LOG", "1"), ("QUEUE", "a"))
    for desired in fleet.instances:
        assert desired.spec.name == desired.name
        assert desired.spec.dir == str(tmp_path.resolve())
        assert (desired.spec.restart, desired.spec.max_restarts) == ("on-failure", 10)
        assert desired.model == desired.spec.model == "anthropic/claude-sonnet-4"
        assert desired.agent == desired.spec.agent == "build"
        assert desired.spec.auth is True


def test_an_instance_gets_the_spec_of_the_same_ocm_start(here: Path) -> None:
    (here / "src").mkdir()
    text = """
[instance.api]
dir = "src"
port = 4101
hostname = "localhost"
cors = ["http://localhost:3000"]
log_level = "debug"
env = { A = "1" }
auth = false
shared_data = true
restart = "always"
max_restarts = 3
restart_window = "2m"
health_interval = 2
max_memory = "1500M"
max_age = "12h"
log_max_size = "1M"
log_keep = 2
warm = false
"""
    (desired,) = parse_fleet_file(text, Path(FLEET_FILE)).instances
    # ocm start api --dir src --port 4101 --hostname localhost --cors ... --no-auth ...
    # ... --no-warm
    supervision = Supervision(
        restart="always",
        max_restarts=3,
        restart_window=120.0,
        health_interval=2.0,
        max_memory=parse_size("1500M"),
        max_age=12 * 3600.0,
        log_max_size=parse_size("1M"),
        log_keep=2,
        warm=False,
    )
    (expected,) = build_specs(
        name="api", count=1, directory="src", port=4101, hostname="localhost",
        cors=("http://localhost:3000",), log_level="debug", env=("A=1",), auth=False,
        shared_data=True, cwd=str(here), supervision=supervision,
    )  # fmt: skip
    assert desired.spec == expected
    assert (desired.model, desired.agent, desired.group) == (None, None, None)


def test_defaults_env_merges_key_by_key_and_other_keys_replace(here: Path) -> None:
    text = """
[defaults]
env = { A = "1", B = "2" }
restart = "never"
[instance.one]
env = { B = "x", C = "3" }
restart = "always"
[instance.two]
"""
    one, two = parse_fleet_file(text, Path(FLEET_FILE)).instances
    assert one.spec.env == (("A", "1"), ("B", "x"), ("C", "3"))
    assert one.spec.restart == "always"
    assert two.spec.env == (("A", "1"), ("B", "2"))
    assert two.spec.restart == "never"


def test_a_group_of_one_is_numbered_and_the_project_defaults_to_the_directory(
    here: Path,
) -> None:
    fleet = parse_fleet_file("[group.worker]\ncount = 1\n", here / FLEET_FILE)
    assert [d.name for d in fleet.instances] == ["worker-1"]
    assert fleet.project == here.name


def test_instances_come_in_the_order_of_the_file(here: Path) -> None:
    text = "[group.b]\ncount = 2\n[instance.a]\n[instance.c]\n"
    fleet = parse_fleet_file(text, Path(FLEET_FILE))
    assert [(d.name, d.line) for d in fleet.instances] == [
        ("b-1", 1), ("b-2", 1), ("a", 3), ("c", 4),
    ]  # fmt: skip


MALFORMED = [
    pytest.param("[instance.web]\nport = \n", 2, "[instance.web] port: invalid TOML", id="toml"),
    pytest.param(
        "[instance.web]\nport = 1\n\n[instance.web]\n", 4, "[instance.web]: invalid TOML: Cannot",
        id="same-table-twice",
    ),
    pytest.param(
        '[instance.web]\nport = "abc"\n', 2,
        '[instance.web] port: expected an integer, got string "abc"', id="port-type",
    ),
    pytest.param(
        '[group.w]\nport_range = "4200-4299"\ncount = "2"\n', 3,
        '[group.w] count: expected an integer, got string "2"', id="count-type",
    ),
    pytest.param(
        '[defaults]\nenv = "x"\n[instance.web]\n', 2,
        '[defaults] env: expected a table of strings, got string "x"', id="env-type",
    ),
    pytest.param(
        "[instance.web]\nenv.LOG = 1\n", 2,
        "[instance.web] env.LOG: expected a string, got integer 1", id="env-value-type",
    ),
    pytest.param(
        "[instance.web]\nauth = 1\n", 2,
        "[instance.web] auth: expected true or false, got integer 1", id="bool-type",
    ),
    pytest.param(
        "[instance.web]\n# the port\n\nprot = 4101\n", 4,
        "[instance.web] prot: unknown key (did you mean port?)", id="unknown-key",
    ),
    pytest.param(
        "[instance.web]\n\n[instances.api]\nport = 1\n", 3,
        "[instances]: unknown table (did you mean [instance]?)", id="unknown-table",
    ),
    pytest.param(
        "[defaults]\ncount = 2\n[instance.web]\n", 2,
        "[defaults] count: unknown key (only a [group.NAME] has a count)", id="count-in-defaults",
    ),
    pytest.param(
        "[group.worker]\ncount = 2\n\n[instance.worker-2]\n", 4,
        "[instance.worker-2]: worker-2 is already declared by [group.worker] (line 1)",
        id="duplicate-name",
    ),
    pytest.param(
        "[instance.web]\n[group.worker]\ncount = 0\n", 3,
        "[group.worker] count: invalid count 0: use 1 to 64", id="count-0",
    ),
    pytest.param(
        "[group.worker]\ncount = 65\n", 2, "[group.worker] count: invalid count 65", id="count-65"
    ),
    pytest.param(
        "[group.worker]\ncount = 2\nport = 4101\n", 3,
        "[group.worker] port: port 4101 gives one instance a fixed port; "
        "use port_range for count > 1",
        id="port-on-group",
    ),
    pytest.param(
        '[group.worker]\ncount = 3\nport_range = "4200-4201"\n', 3,
        "[group.worker] port_range: port range 4200-4201 is smaller than count 3",
        id="range-too-small",
    ),
    pytest.param(
        '[group.worker]\ncount = 2\nport_range = "4300-4200"\n', 3,
        "[group.worker] port_range: invalid port range '4300-4200': start is above end",
        id="range-backwards",
    ),
    pytest.param(
        "[instance.a]\nport = 4101\n[instance.b]\nhostname = 'localhost'\nport = 4101\n", 5,
        "[instance.b] port: 4101 is also the port of a (line 2)", id="same-port-twice",
    ),
    pytest.param(
        "[instance.web]\nport = 70000\n", 2, "[instance.web] port: invalid port 70000", id="port"
    ),
    pytest.param(
        '[instance.web]\nmax_age = "12 hours"\n', 2,
        "[instance.web] max_age: invalid duration '12 hours'", id="bad-duration",
    ),
    pytest.param(
        '[defaults]\nmax_memory = "1500Q"\n[instance.web]\n', 2,
        "[defaults] max_memory: invalid size '1500Q'", id="bad-size",
    ),
    pytest.param(
        '[defaults]\nmax_memory = "10M"\n[instance.web]\n', 2,
        "[defaults] max_memory: invalid max_memory: below 64M", id="size-too-small",
    ),
    pytest.param(
        "[instance.web]\nrestart_window = true\n", 2,
        "[instance.web] restart_window: expected seconds (a number) or a duration",
        id="duration-type",
    ),
    pytest.param(
        '[instance.web]\nrestart = "sometimes"\n', 2,
        "[instance.web] restart: invalid restart 'sometimes': choose from never, on-failure",
        id="restart",
    ),
    pytest.param(
        '[instance.web]\ndir = "missing"\n', 2,
        "[instance.web] dir: dir missing: no such directory", id="missing-dir",
    ),
    pytest.param(
        '[instance.web]\nhostname = "0.0.0.0"\nauth = false\n', 3,
        "[instance.web] auth: refusing auth = false on 0.0.0.0", id="no-auth-exposed",
    ),
    pytest.param(
        '[defaults]\nauth = false\n[instance.web]\nhostname = "0.0.0.0"\n', 2,
        "[defaults] auth: refusing auth = false on 0.0.0.0: a server reachable from other "
        "machines must have a password (drop auth = false, or bind 127.0.0.1) "
        "(for [instance.web])",
        id="no-auth-from-defaults",
    ),
    pytest.param(
        "[instance.web]\nconfig = { model = 'a/b' }\n"
        "env = { OPENCODE_CONFIG_CONTENT = '{}' }\n", 2,
        "[instance.web] config: env also sets OPENCODE_CONFIG_CONTENT (line 3)",
        id="config-and-env",
    ),
    pytest.param(
        "[instance.web]\n[instance.web.env]\nOPENCODE_SERVER_PASSWORD = 'x'\n", 3,
        "[instance.web] env.OPENCODE_SERVER_PASSWORD: env OPENCODE_SERVER_PASSWORD is not "
        "allowed",
        id="reserved-env",
    ),
    pytest.param(
        "[instance.1web]\n", 1, "[instance.1web]: invalid instance name '1web'", id="bad-name"
    ),
    pytest.param(
        "[instance.web]\nmodel = 'sonnet'\n", 2,
        "[instance.web] model: invalid model 'sonnet': expected PROVIDER/MODEL", id="model",
    ),
    pytest.param(
        "[instance.web]\nlog_level = 'LOUD'\n", 2,
        "[instance.web] log_level: invalid log_level 'LOUD': choose from", id="log-level",
    ),
    pytest.param(
        "[project]\nname = 'my api'\n[instance.web]\n", 2,
        "[project] name: invalid project name 'my api'", id="project-name",
    ),
    pytest.param(
        "port = 4101\n[instance.web]\n", 1,
        "port: unknown key outside any table: instance keys go in [defaults]", id="top-level-key",
    ),
    pytest.param(
        "[instance]\nport = 4101\n", 2,
        "[instance.port]: expected a table [instance.port], got integer 4101", id="nameless",
    ),
    pytest.param("# nothing yet\n", None, "no instances: add [instance.NAME]", id="empty"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "expected"), MALFORMED)
def test_malformed_files_name_the_file_line_and_key(
    here: Path, text: str, line: int | None, expected: str
) -> None:
    first = parse(text)[0]
    at = f"ocm.toml:{line}: " if line is not None else "ocm.toml: "
    assert first.startswith(at + expected), first


def test_every_error_is_reported_in_the_order_of_the_file(here: Path) -> None:
    text = """\
[defaults]
prot = 4101
[instance.web]
port = "abc"
env = { A = 1, B = 2 }
[group.worker]
count = 0
[servers]
"""
    lines = parse(text)
    assert [line.split(": ")[0:2] for line in lines] == [
        ["ocm.toml:2", "[defaults] prot"],
        ["ocm.toml:4", "[instance.web] port"],
        ["ocm.toml:5", "[instance.web] env.A"],
        ["ocm.toml:5", "[instance.web] env.B"],
        ["ocm.toml:7", "[group.worker] count"],
        ["ocm.toml:8", "[servers]"],
    ]


def test_the_error_is_a_usage_error_with_its_problems(here: Path) -> None:
    with pytest.raises(UsageError) as caught:
        parse_fleet_file("[instance.web]\nport = 0\n", Path(FLEET_FILE))
    error = caught.value
    assert isinstance(error, FleetFileError)
    assert error.exit_code == 2
    assert error.path == Path(FLEET_FILE)
    (problem,) = error.problems
    assert (problem.line, problem.table, problem.key) == (2, "instance.web", "port")


def test_the_end_of_the_document_is_its_last_line(here: Path) -> None:
    assert parse("[instance.web]\ncors = ['a',\n\n")[0].startswith(
        "ocm.toml:2: [instance.web] cors: invalid TOML:"
    )


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / FLEET_FILE
    path.write_bytes(b"[instance.web]\n# caf\xe9\n")
    with pytest.raises(FleetFileError, match=r"ocm\.toml:2: not UTF-8 text"):
        load_fleet_file(path)
    with pytest.raises(FleetFileError, match="cannot read"):
        load_fleet_file(tmp_path / "missing.toml")


def test_find_fleet_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=re.escape(f"no ocm.toml in {tmp_path}")):
        find_fleet_file(tmp_path)
    (tmp_path / FLEET_FILE).write_text("")
    assert find_fleet_file(tmp_path) == tmp_path / FLEET_FILE
    (tmp_path / "prod.toml").write_text("")
    assert find_fleet_file(tmp_path, "prod.toml") == tmp_path / "prod.toml"
    assert find_fleet_file(Path("/"), str(tmp_path / "prod.toml")) == tmp_path / "prod.toml"
    assert find_fleet_file(tmp_path.parent, tmp_path.name) == tmp_path / FLEET_FILE
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"-f empty: a directory without ocm\.toml"):
        find_fleet_file(tmp_path, "empty")
    with pytest.raises(UsageError, match=r"-f nope\.toml: no such file"):
        find_fleet_file(tmp_path, "nope.toml")


def test_relative_paths_stay_relative_in_messages(here: Path) -> None:
    (here / FLEET_FILE).write_text("[instance.web]\nport = 0\n")
    with pytest.raises(FleetFileError, match=r"^ocm\.toml:2: "):
        load_fleet_file(find_fleet_file(Path()))


def test_a_bare_instance_is_a_bare_ocm_start_in_the_files_directory(here: Path) -> None:
    (web,) = parse_fleet_file("[instance.web]\n", Path(FLEET_FILE)).instances
    assert web.spec == build_specs(name="web", count=1, directory=None)[0]


def test_each_instance_chooses_its_opencode_a_version_or_a_path(here: Path) -> None:
    text = (
        '[defaults]\nopencode = "1.18.33"\n'
        '[instance.v2]\nopencode = "2.1.2"\n'
        '[instance.mine]\nopencode = "bin/opencode"\n'
        "[instance.plain]\n"
    )
    found = {d.name: d.spec.binary for d in parse_fleet_file(text, here / FLEET_FILE).instances}
    assert found == {
        "v2": "2.1.2",
        "mine": str(here / "bin" / "opencode"),  # relative to the file, like `dir`
        "plain": "1.18.33",
    }


def test_an_opencode_of_no_supported_line_is_refused_where_it_is_written(here: Path) -> None:
    lines = parse('[instance.v3]\nopencode = "3.0.0"\n')
    assert lines == [
        "ocm.toml:2: [instance.v3] opencode: invalid opencode 3.0.0: opencode 3.0.0 is a line "
        "opencode-manager does not know: it supports 1.x (>= 1.1.39) and 2.x"
    ]


LIMITS = """\
[limits]
anthropic = { concurrency = 8, rpm = 50 }
"anthropic/claude-opus-4" = { concurrency = 2 }

[limits.openai]
rpm = 30

[instance.web]
"""


def test_limits_are_read_in_the_order_of_the_file(here: Path) -> None:
    from opencode_manager.limits import Limit, Scope

    fleet = parse_fleet_file(LIMITS, Path(FLEET_FILE))
    assert fleet.limits == (
        Limit(Scope("anthropic"), 8, 50),
        Limit(Scope("anthropic", "claude-opus-4"), 2, None),
        Limit(Scope("openai"), None, 30),
    )
    assert [d.name for d in fleet.instances] == ["web"]
    # A file may hold limits alone.
    assert parse_fleet_file("[limits]\np = { rpm = 1 }\n", Path(FLEET_FILE)).instances == ()
    assert parse_fleet_file(EXAMPLE, Path(FLEET_FILE)).limits == ()


def test_bad_limits_name_their_line_and_key(here: Path) -> None:
    text = """\
[limits]
anthropic = { concurrency = 0, rmp = 3 }
"a b" = { rpm = 1 }
x = 3
y = {}
"p/m" = { rpm = "5" }
openai.gpt = { rpm = 2 }
"""
    assert parse(text) == [
        "ocm.toml:2: [limits] anthropic.concurrency: must be 1 or more, got 0",
        "ocm.toml:2: [limits] anthropic.rmp: unknown key (did you mean rpm?)",
        "ocm.toml:3: [limits] a b: invalid provider 'a b': expected PROVIDER or PROVIDER/MODEL"
        " (letters, digits, '.', '_', '-', ':', '@')",
        "ocm.toml:4: [limits] x: expected a table like { concurrency = 4, rpm = 60 }, got"
        " integer 3",
        "ocm.toml:5: [limits] y: give concurrency and/or rpm",
        'ocm.toml:6: [limits] p/m.rpm: expected an integer, got string "5"',
        "ocm.toml:7: [limits] openai.gpt: unknown key (a model's limit is written"
        ' "openai/gpt" = { ... })',
    ]
    assert parse("limits = 3\n") == ["ocm.toml:1: [limits]: expected a table, got integer 3"]
