"""Unit tests: finding and checking the opencode binary (fake executables, no OpenCode)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opencode_manager.errors import BinaryError, UsageError
from opencode_manager.instances.binary import find_binary, install, is_supported, parse_version
from opencode_manager.settings import Settings


def _fake(path: Path, version: str) -> Path:
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def test_versions() -> None:
    assert parse_version("opencode 1.18.33\n") == (1, 18, 33)
    assert parse_version("nope") is None
    assert is_supported("1.1.39")
    assert is_supported("1.18.33")
    assert is_supported("2.0.0")
    assert not is_supported("1.1.38")
    assert not is_supported("0.9.0")


def test_explicit_binary_wins_and_is_version_checked(tmp_path: Path) -> None:
    exe = _fake(tmp_path / "opencode", "1.18.33")
    found = find_binary(Settings.load(home=tmp_path / "h", opencode=str(exe), environ={}))
    assert (found.path, found.version, found.source) == (str(exe), "1.18.33", "explicit")


def test_too_old_is_refused_with_advice_that_works_where_it_is_given(tmp_path: Path) -> None:
    exe = _fake(tmp_path / "opencode", "1.0.5")
    with pytest.raises(BinaryError, match=r"too old: opencode-manager needs >= 1\.1\.39") as info:
        find_binary(Settings.load(home=tmp_path / "h", opencode=str(exe), environ={}))
    # `ocm install` cannot help while OCM_OPENCODE wins: the advice says so.
    assert "unset it and run `ocm install`" in str(info.value)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _fake(bindir / "opencode", "1.0.5")
    on_path = Settings.load(home=tmp_path / "h", environ={"PATH": str(bindir)})
    with pytest.raises(BinaryError, match="run `ocm install` or upgrade opencode"):
        find_binary(on_path)


def _npm_layout(root: Path, *, nested: bool) -> tuple[Path, Path]:
    """npm's layout for opencode-ai 1.1.53-1.14.41: bin/opencode is a Node script and the real
    binary sits in the platform package (flat, or nested under opencode-ai)."""
    modules = root / "node_modules"
    wrapper = modules / "opencode-ai" / "bin" / "opencode"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text("#!/usr/bin/env node\nrequire('child_process')\n")
    wrapper.chmod(0o755)
    base = modules / "opencode-ai" / "node_modules" if nested else modules
    real = base / f"opencode-{_platform()}" / "bin" / "opencode"
    real.parent.mkdir(parents=True)
    _fake(real, "1.14.41")
    link = modules / ".bin" / "opencode"
    link.parent.mkdir()
    link.symlink_to(os.path.relpath(wrapper, link.parent))
    return link, real


def _platform() -> str:
    from opencode_manager.instances.binary import _platform_package

    return _platform_package().removeprefix("opencode-")


@pytest.mark.parametrize("nested", [False, True])
def test_an_npm_node_wrapper_resolves_to_the_real_server(tmp_path: Path, nested: bool) -> None:
    link, real = _npm_layout(tmp_path / "prefix", nested=nested)
    found = find_binary(Settings.load(home=tmp_path / "h", opencode=str(link), environ={}))
    assert found.path == str(real)  # we run, signal and measure the server, not the wrapper
    assert found.version == "1.14.41"


def test_a_wrapper_without_its_binary_is_refused_clearly(tmp_path: Path) -> None:
    link, real = _npm_layout(tmp_path / "prefix", nested=False)
    real.unlink()
    with pytest.raises(BinaryError, match="Node wrapper"):
        find_binary(Settings.load(home=tmp_path / "h", opencode=str(link), environ={}))


def test_missing_everywhere(tmp_path: Path) -> None:
    settings = Settings.load(
        home=tmp_path / "h", environ={"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path)}
    )
    with pytest.raises(BinaryError, match="ocm install"):
        find_binary(settings)
    with pytest.raises(BinaryError, match="does not exist"):
        find_binary(Settings.load(home=tmp_path / "h", opencode="/no/such/opencode", environ={}))


def test_path_lookup(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _fake(bindir / "opencode", "1.2.0")
    settings = Settings.load(
        home=tmp_path / "h", environ={"PATH": str(bindir), "HOME": str(tmp_path)}
    )
    assert find_binary(settings).source == "PATH"


def test_install_needs_npm_and_a_sane_version(tmp_path: Path) -> None:
    settings = Settings.load(
        home=tmp_path / "h", environ={"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path)}
    )
    with pytest.raises(BinaryError, match="npm not found"):
        install(settings, "1.18.33")
    with pytest.raises(UsageError, match="invalid version"):
        install(settings, "latest; rm -rf /")
    with pytest.raises(BinaryError, match="too old"):
        install(settings, "1.0.0")
    assert not any(p.name.endswith(".partial") for p in (tmp_path / "h").rglob("*"))
    assert os.environ.get("PATH")  # the real environment was not touched
