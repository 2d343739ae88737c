"""Unit tests: validating start requests (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencode_manager.errors import UsageError
from opencode_manager.instances.spec import (
    build_specs,
    next_generated_names,
    parse_env,
    parse_port,
    parse_port_range,
    validate_name,
)


@pytest.mark.parametrize("value", ["-1", "0", "70000", "abc", "", "65536", "4.5"])
def test_bad_ports_are_refused(value: str) -> None:
    with pytest.raises(UsageError, match="invalid port"):
        parse_port(value)


@pytest.mark.parametrize(("value", "port"), [("1", 1), ("4096", 4096), (" 65535 ", 65535)])
def test_good_ports(value: str, port: int) -> None:
    assert parse_port(value) == port


def test_port_range() -> None:
    assert parse_port_range("4100-4199") == (4100, 4199)
    for bad in ("4100", "4200-4100", "a-b", "1-2-3", "0-10"):
        with pytest.raises(UsageError):
            parse_port_range(bad)


def test_env_needs_equals_and_a_name() -> None:
    assert parse_env(["A=1", "B=x=y", "C="]) == (("A", "1"), ("B", "x=y"), ("C", ""))
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_env(["NOEQUALS"])
    with pytest.raises(UsageError, match="not a variable name"):
        parse_env(["1BAD=x"])
    with pytest.raises(UsageError, match="not allowed"):
        parse_env(["OPENCODE_SERVER_PASSWORD=x"])


@pytest.mark.parametrize("name", ["4096", "-x", "", "a b", "x" * 64, "http://x", "a/b"])
def test_bad_names(name: str) -> None:
    with pytest.raises(UsageError):
        validate_name(name)


def test_generated_names_fill_gaps() -> None:
    assert next_generated_names(set(), 3) == ["oc-1", "oc-2", "oc-3"]
    assert next_generated_names({"oc-1", "oc-3"}, 2) == ["oc-2", "oc-4"]


def test_build_specs_expands_names(tmp_path: Path) -> None:
    specs = build_specs(name="web", count=3, directory=str(tmp_path))
    assert [s.name for s in specs] == ["web-1", "web-2", "web-3"]
    assert all(s.dir == str(tmp_path.resolve()) for s in specs)
    assert [s.name for s in build_specs(name=None, count=2, directory=str(tmp_path))] == ["", ""]


def test_build_specs_relative_dir(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    [spec] = build_specs(name=None, count=1, directory="proj", cwd=str(tmp_path))
    assert spec.dir == str((tmp_path / "proj").resolve())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "invalid -n 0"),
        ({"count": -2}, "invalid -n -2"),
        ({"hostname": "0.0.0.0", "auth": False}, "refusing --no-auth on 0.0.0.0"),
        ({"port": 4300, "count": 2}, "use --port-range"),
        ({"port": 4300, "port_range": (1, 2)}, "mutually exclusive"),
        ({"port_range": (4100, 4100), "count": 2}, "smaller than -n 2"),
        ({"log_level": "LOUD"}, "invalid --log-level"),
        ({"directory": "/nonexistent/dir"}, "no such directory"),
    ],
)
def test_build_specs_rejects(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": None, "count": 1, "directory": str(tmp_path)}
    args.update(kwargs)
    with pytest.raises(UsageError, match=message):
        build_specs(**args)  # type: ignore[arg-type]


def test_no_auth_allowed_on_loopback(tmp_path: Path) -> None:
    [spec] = build_specs(name="a", count=1, directory=str(tmp_path), auth=False)
    assert spec.auth is False
    with pytest.raises(UsageError):
        build_specs(name="a", count=1, directory=str(tmp_path / "missing"))
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        build_specs(name="a", count=1, directory=str(file))


def test_an_instances_opencode_is_a_version_or_an_absolute_path(tmp_path: Path) -> None:
    [two] = build_specs(name="a", count=1, directory=None, cwd=str(tmp_path), binary="2.1.2")
    assert two.binary == "2.1.2"
    [path] = build_specs(name="a", count=1, directory=None, cwd=str(tmp_path), binary="b/oc")
    assert path.binary == str(tmp_path / "b" / "oc")  # a restart from elsewhere finds it
    [none] = build_specs(name="a", count=1, directory=None, cwd=str(tmp_path))
    assert none.binary is None
    with pytest.raises(UsageError, match=r"invalid --opencode 3\.0\.0: .* 1\.x .* and 2\.x"):
        build_specs(name="a", count=1, directory=None, cwd=str(tmp_path), binary="3.0.0")
