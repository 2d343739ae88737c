"""Unit tests: the systemd user units of `ocm export systemd` (text, quoting, writing), and
`systemd-analyze verify` on what is written (no systemd needs to run)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from opencode_manager.errors import UsageError
from opencode_manager.instances.systemd import (
    CARRIED_VARIABLES,
    RESURRECT_UNIT,
    Unit,
    default_unit_dir,
    enable_commands,
    fleet_unit,
    instance_unit,
    ocm_command,
    resurrect_unit,
    unit_environment,
    write_units,
)
from opencode_manager.models import InstanceSpec
from opencode_manager.supervision import RestartPolicy

OCM = ocm_command()  # the real console script of this virtualenv: verify checks it exists
HOME = Path("/srv/ocm home")


def lines(unit: Unit, key: str) -> list[str]:
    prefix = f"{key}="
    return [line.removeprefix(prefix) for line in unit.text.splitlines() if line.startswith(prefix)]


def one(unit: Unit, key: str) -> str:
    found = lines(unit, key)
    assert len(found) == 1, (key, unit.text)
    return found[0]


# -- the text ------------------------------------------------------------------------------------
def test_this_ocm_is_the_console_script_next_to_the_running_python() -> None:
    script = Path(sys.executable).absolute().with_name("ocm")
    assert [str(script)] == OCM
    assert script.is_absolute()
    assert os.access(script, os.X_OK)


def test_without_a_console_script_python_runs_the_package(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python3"
    python.parent.mkdir()
    python.touch(mode=0o755)
    assert ocm_command(str(python)) == [str(python), "-m", "opencode_manager"]
    (python.parent / "ocm").touch(mode=0o755)
    assert ocm_command(str(python)) == [str(python.parent / "ocm")]


def test_an_instance_unit_starts_and_stops_that_instance_with_this_ocm() -> None:
    spec = InstanceSpec(name="api", dir="/src/api", project="shop", restart=RestartPolicy.ALWAYS)
    unit = instance_unit(spec, ocm=OCM, home=HOME)
    assert unit.name == "ocm-api.service"
    assert one(unit, "Type") == "oneshot"
    assert one(unit, "RemainAfterExit") == "yes"
    assert one(unit, "ExecStart") == f"{OCM[0]} start --existing api"
    assert one(unit, "ExecStop") == f"-{OCM[0]} stop api"
    assert lines(unit, "Environment") == ['"OCM_HOME=/srv/ocm home"']
    assert one(unit, "WorkingDirectory") == "-/src/api"
    assert one(unit, "Description") == "OpenCode instance api (ocm, project shop)"
    assert one(unit, "WantedBy") == "default.target"
    assert "Restart" not in unit.text.replace("restart", "")  # the keeper applies the policy
    assert "Its restart policy (always) is applied by its keeper" in unit.text.replace("\n# ", " ")


def test_the_python_fallback_runs_the_package() -> None:
    python = [sys.executable, "-m", "opencode_manager"]
    unit = instance_unit(InstanceSpec(name="a", dir="/p"), ocm=python, home=HOME)
    assert one(unit, "ExecStart") == f"{sys.executable} -m opencode_manager start --existing a"


def test_the_resurrect_unit_and_the_fleet_unit() -> None:
    unit = resurrect_unit(ocm=OCM, home=HOME)
    assert unit.name == RESURRECT_UNIT == "ocm-resurrect.service"
    assert one(unit, "ExecStart") == f"{OCM[0]} resurrect"
    assert one(unit, "ExecStop") == f"-{OCM[0]} stop --all"
    assert "WorkingDirectory" not in unit.text
    fleet = fleet_unit(Path("/src/shop/ocm.toml"), "shop", ocm=OCM, home=HOME)
    assert fleet.name == "ocm-fleet-shop.service"
    assert one(fleet, "ExecStart") == f"{OCM[0]} up -f /src/shop/ocm.toml"
    assert one(fleet, "ExecStop") == f"-{OCM[0]} down -f /src/shop/ocm.toml"
    assert one(fleet, "WorkingDirectory") == "-/src/shop"


def test_a_project_name_that_is_not_plain_is_escaped_like_systemd_escape() -> None:
    fleet = fleet_unit(Path("/src/my shop/ocm.toml"), "my shop", ocm=OCM, home=HOME)
    assert fleet.name == "ocm-fleet-my\\x20shop.service"
    assert (
        fleet_unit(Path("/p/ocm.toml"), ".x", ocm=OCM, home=HOME).name == "ocm-fleet-\\x2ex.service"
    )


def test_values_are_quoted_the_way_systemd_reads_them() -> None:
    odd = '/srv/a b/100%/$x "q" \\z'
    program = "/opt/my tools %1/bin/ocm"
    unit = instance_unit(InstanceSpec(name="a", dir=odd), ocm=[program], home=Path(odd))
    # Environment=: quoted whole, C escapes, % doubled, $ as it is (no expansion there).
    assert lines(unit, "Environment") == ['"OCM_HOME=/srv/a b/100%%/$x \\"q\\" \\\\z"']
    # WorkingDirectory=: the rest of the line as it is, % doubled.
    assert one(unit, "WorkingDirectory") == '-/srv/a b/100%%/$x "q" \\z'
    assert one(unit, "ExecStart") == '"/opt/my tools %%1/bin/ocm" start --existing a'
    fleet = fleet_unit(Path(odd) / "ocm.toml", "p", ocm=[program], home=HOME)
    # An argument: quoted, C escapes, % and $ doubled.
    assert one(fleet, "ExecStart") == (
        '"/opt/my tools %%1/bin/ocm" up -f "/srv/a b/100%%/$$x \\"q\\" \\\\z/ocm.toml"'
    )


@pytest.mark.parametrize(
    ("spec", "ocm", "home", "message"),
    [
        (InstanceSpec(name="a", dir="/p\nExecStart=/bin/sh"), OCM, HOME, "control character"),
        (InstanceSpec(name="a", dir="/p/ends in space "), OCM, HOME, "ends in a space"),
        (InstanceSpec(name="a", dir="relative"), OCM, HOME, "must be an absolute path"),
        (InstanceSpec(name="a", dir="/p"), OCM, Path("rel"), "must be an absolute path"),
        (InstanceSpec(name="a", dir="/p"), ["ocm"], HOME, "absolute path"),
        (InstanceSpec(name="a", dir="/p"), ['/a"b/ocm'], HOME, "a quote, a backslash or a '\\$'"),
        (InstanceSpec(name="a", dir="/p"), ["/a$b/ocm"], HOME, "a quote, a backslash or a '\\$'"),
    ],
)
def test_what_systemd_cannot_read_back_is_refused(
    spec: InstanceSpec, ocm: list[str], home: Path, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        instance_unit(spec, ocm=ocm, home=home)


def test_no_secrets_only_the_allowed_environment() -> None:
    environ = {"PATH": "/opt/node/bin:/usr/bin", "ANTHROPIC_API_KEY": "sk-secret", "HOME": "/h"}
    carried = unit_environment(environ)
    assert carried == {"PATH": "/opt/node/bin:/usr/bin"}
    spec = InstanceSpec(name="a", dir="/p", env=(("OPENAI_API_KEY", "sk-other"),))
    unit = instance_unit(spec, ocm=OCM, home=HOME, environment=carried)
    assert lines(unit, "Environment") == [
        '"OCM_HOME=/srv/ocm home"',
        "PATH=/opt/node/bin:/usr/bin",
    ]
    assert "sk-" not in unit.text
    assert "API_KEY" not in unit.text
    assert "ANTHROPIC_API_KEY" not in CARRIED_VARIABLES
    with pytest.raises(UsageError, match="cannot go in a unit"):
        instance_unit(spec, ocm=OCM, home=HOME, environment={"ANTHROPIC_API_KEY": "x"})


# -- where, and writing --------------------------------------------------------------------------
def test_the_default_unit_dir_follows_xdg_config_home() -> None:
    assert default_unit_dir({"HOME": "/home/u"}) == Path("/home/u/.config/systemd/user")
    assert default_unit_dir({"HOME": "/home/u", "XDG_CONFIG_HOME": "/cfg"}) == Path(
        "/cfg/systemd/user"
    )
    # The XDG spec: a relative value is invalid and ignored.
    assert default_unit_dir({"HOME": "/home/u", "XDG_CONFIG_HOME": "cfg"}) == Path(
        "/home/u/.config/systemd/user"
    )


def test_write_units_writes_where_asked_0644_whatever_the_umask(tmp_path: Path) -> None:
    units = [
        instance_unit(InstanceSpec(name="a", dir="/p"), ocm=OCM, home=HOME),
        resurrect_unit(ocm=OCM, home=HOME),
    ]
    target = tmp_path / "deep" / "units"
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "units").mkdir()
    (target / "ocm-a.service").write_text("old")
    old_umask = os.umask(0o077)
    try:
        paths = write_units(units, target)
    finally:
        os.umask(old_umask)
    assert paths == [target / "ocm-a.service", target / "ocm-resurrect.service"]
    for path, unit in zip(paths, units, strict=True):
        assert path.read_text() == unit.text
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.iterdir()) == ["ocm-a.service", "ocm-resurrect.service"]
    assert write_units(units[:1], tmp_path / "new" / "dir") == [tmp_path / "new/dir/ocm-a.service"]


def test_write_units_refuses_a_name_twice(tmp_path: Path) -> None:
    unit = instance_unit(InstanceSpec(name="a", dir="/p"), ocm=OCM, home=HOME)
    with pytest.raises(UsageError, match="repeated"):
        write_units([unit, unit], tmp_path / "units")
    assert not (tmp_path / "units").exists()


def test_enable_commands() -> None:
    units = [
        instance_unit(InstanceSpec(name="a", dir="/p"), ocm=OCM, home=HOME),
        instance_unit(InstanceSpec(name="b", dir="/p"), ocm=OCM, home=HOME),
    ]
    assert enable_commands(units, user="alice") == [
        "systemctl --user daemon-reload",
        "systemctl --user enable ocm-a.service ocm-b.service",
        "loginctl enable-linger alice",
    ]
    # Outside systemd's search path: enabled by path, which links them in.
    by_path = enable_commands(units[:1], directory=Path("/tmp/my units"), user="bob")
    assert by_path[1] == "systemctl --user enable '/tmp/my units/ocm-a.service'"
    assert enable_commands(units)[2].startswith("loginctl enable-linger ")
    assert enable_commands([]) == []


# -- systemd-analyze verify ----------------------------------------------------------------------
def verify(paths: list[Path], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail(
            "systemd-analyze is not installed, so the units cannot be verified: run "
            "scripts/setup (it installs systemd), or `apt-get install systemd`"
        )
    runtime = tmp_path / "runtime"  # `--user` needs one; no user manager has to run
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(
        [analyze, "verify", "--user", "--man=no", *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_verified(paths: list[Path], tmp_path: Path) -> None:
    result = verify(paths, tmp_path)
    output = result.stdout + result.stderr
    names = [p.name for p in paths] + [str(p.parent) for p in paths]
    mentions = [line for line in output.splitlines() if any(n in line for n in names)]
    assert result.returncode == 0, output
    assert not mentions, output


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    environment = unit_environment(os.environ)
    units = [
        instance_unit(
            InstanceSpec(name="api", dir=str(tmp_path), project="shop"),
            ocm=OCM,
            home=tmp_path / "ocm",
            environment=environment,
        ),
        instance_unit(
            InstanceSpec(name="b.2_x-y", dir=str(tmp_path / "gone")),
            ocm=[sys.executable, "-m", "opencode_manager"],
            home=tmp_path / "ocm",
        ),
        resurrect_unit(ocm=OCM, home=tmp_path / "ocm", environment=environment),
        fleet_unit(tmp_path / "ocm.toml", "my shop", ocm=OCM, home=tmp_path / "ocm"),
    ]
    assert_verified(write_units(units, tmp_path / "units"), tmp_path)


def test_odd_paths_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # The program must exist for verify: this ocm, reached through a directory with spaces,
    # a specifier and non-ASCII. The rest has everything systemd treats specially.
    bindir = tmp_path / "my tools %h ü;x"
    bindir.mkdir()
    (bindir / "ocm").symlink_to(OCM[0])
    odd = tmp_path / "work dir \"q\" 's' \\b %n $HOME"
    units = [
        instance_unit(InstanceSpec(name="a", dir=str(odd)), ocm=[str(bindir / "ocm")], home=odd),
        fleet_unit(odd / "ocm.toml", "p", ocm=[str(bindir / "ocm")], home=odd),
    ]
    assert_verified(write_units(units, tmp_path / "units dir"), tmp_path)


def test_verify_does_check_the_program(tmp_path: Path) -> None:
    """The harness is not vacuous: a unit whose program is missing fails verification."""
    unit = instance_unit(InstanceSpec(name="a", dir="/p"), ocm=["/nonexistent/ocm"], home=HOME)
    result = verify(write_units([unit], tmp_path / "units"), tmp_path)
    assert result.returncode != 0
    assert "/nonexistent/ocm is not executable" in result.stdout + result.stderr


def test_the_printed_commands_stay_whole_on_an_80_column_terminal(tmp_path: Path) -> None:
    """They are to be copied: a command wrapped by the terminal pastes as it was written,
    one folded by the printer pastes as two broken ones."""
    from helpers import run_in_terminal

    project = tmp_path / "shop"
    project.mkdir()
    (project / "ocm.toml").write_text("[instance.web]\nport = 4101\n")
    units = tmp_path / ("units-" + "u" * 70)
    screen = run_in_terminal(
        "export", "systemd", "--fleet", str(project / "ocm.toml"), "--dir", str(units)
    )
    enable = f"  systemctl --user enable {units / 'ocm-fleet-shop.service'}"
    assert enable in screen.splitlines(), screen
    assert f"wrote {units / 'ocm-fleet-shop.service'}" in screen.splitlines(), screen
