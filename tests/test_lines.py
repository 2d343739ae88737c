"""Unit tests: versions and the OpenCode lines they belong to (pure)."""

from __future__ import annotations

import pytest

from opencode_manager.errors import BinaryError
from opencode_manager.lines import Line, is_supported, known_line, line_of, parse_version


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1.18.33", (1, 18, 33)),
        ("1.18.33\n", (1, 18, 33)),
        ("opencode 1.18.33", (1, 18, 33)),
        ("opencode v2.1.2", (2, 1, 2)),  # what 2.x's --version prints
        ("v2.1.2-beta.1", (2, 1, 2)),
        ("opencode v3.0.0", (3, 0, 0)),
        ("nope", None),
        ("1.18", None),
    ],
)
def test_versions_of_both_lines_are_read(text: str, parsed: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == parsed


@pytest.mark.parametrize(
    ("version", "line"),
    [("1.1.39", Line.V1), ("1.18.33", Line.V1), ("2.0.0", Line.V2), ("2.1.2", Line.V2)],
)
def test_a_line_is_a_property_of_a_version(version: str, line: Line) -> None:
    assert line_of(version) is line
    assert known_line(version) is line
    assert is_supported(version)


def test_the_lines_know_their_package_and_health_route() -> None:
    assert (Line.V1.npm_package, Line.V1.health_route) == ("opencode-ai", "/global/health")
    assert (Line.V2.npm_package, Line.V2.health_route) == ("@opencode/cli", "/api/info")
    assert (Line.V1.label, Line.V2.label) == ("1.x", "2.x")


def test_an_unknown_major_is_refused_naming_the_version_and_the_lines() -> None:
    with pytest.raises(BinaryError) as info:
        line_of("3.0.0")
    assert str(info.value) == (
        "opencode 3.0.0 is a line opencode-manager does not know: it supports "
        "1.x (>= 1.1.39) and 2.x"
    )
    assert known_line("3.0.0") is None
    assert not is_supported("3.0.0")


@pytest.mark.parametrize("version", ["1.1.38", "0.9.0"])
def test_too_old_is_refused(version: str) -> None:
    with pytest.raises(BinaryError, match=r"too old: opencode-manager needs >= 1\.1\.39"):
        line_of(version)
    assert known_line(version) is None


def test_no_version_has_no_line() -> None:
    assert known_line(None) is None
    assert known_line("") is None
    with pytest.raises(BinaryError, match="not an OpenCode version"):
        line_of("latest")
