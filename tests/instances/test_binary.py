"""Unit tests: finding and checking the opencode binary (fake executables, no OpenCode)."""

from __future__ import annotations

import concurrent.futures
import os
import sys
import time
from pathlib import Path

import pytest

from opencode_manager.errors import BinaryError, StateError, UsageError
from opencode_manager.instances.binary import (
    choose,
    find_binary,
    install,
    is_supported,
    managed_installs,
    parse_version,
    probe_version,
)
from opencode_manager.lines import PINNED_VERSIONS, Line
from opencode_manager.settings import PINNED_OPENCODE_VERSION, Settings


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


# -- both lines --------------------------------------------------------------------------------
def test_a_2x_binary_is_found_with_its_line(tmp_path: Path) -> None:
    exe = _fake(tmp_path / "opencode", "opencode v2.1.2")  # what 2.x's --version prints
    found = find_binary(Settings.load(home=tmp_path / "h", opencode=str(exe), environ={}))
    assert (found.version, found.line) == ("2.1.2", Line.V2)


@pytest.mark.parametrize("said", ["3.0.0", "opencode v3.0.0"])
def test_an_unknown_major_is_refused_at_once_in_one_line(tmp_path: Path, said: str) -> None:
    exe = _fake(tmp_path / "opencode", said)
    began = time.monotonic()
    with pytest.raises(BinaryError) as info:
        find_binary(Settings.load(home=tmp_path / "h", opencode=str(exe), environ={}))
    assert time.monotonic() - began < 1.0
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"opencode 3.0.0 at {exe} is not a line opencode-manager supports")
    assert "1.x (>= 1.1.39) and 2.x" in message


def _managed(home: Path, version: str, said: str) -> Path:
    """A managed install as `ocm install` lays it out for the version's line."""
    prefix = home / "opencode" / version / "node_modules"
    if version.startswith("2."):
        exe = prefix / "@opencode" / "cli" / "bin" / "opencode.exe"
    else:
        exe = prefix / f"opencode-{_platform()}" / "bin" / "opencode"
    exe.parent.mkdir(parents=True)
    return _fake(exe, said)


def test_managed_installs_keep_the_pinned_line_first(tmp_path: Path) -> None:
    home = tmp_path / "h"
    one = _managed(home, "1.18.33", "1.18.33")
    two = _managed(home, "2.1.2", "opencode v2.1.2")
    newer_one = _managed(home, "1.19.0", "1.19.0")
    settings = Settings.load(home=home, environ={"PATH": str(tmp_path / "empty")})
    # The pin is 2.x's: with both lines installed, an instance that chooses nothing runs 2.x
    # (a newer 1.x does not take it back to 1.x).
    assert PINNED_OPENCODE_VERSION == PINNED_VERSIONS[Line.V2] == "2.1.2"
    assert managed_installs(settings) == [two, newer_one, one]
    assert find_binary(settings).path == str(two)


def test_ocm_opencode_naming_an_installed_version_stays_on_its_line(tmp_path: Path) -> None:
    """The documented way to stay on 1.x once `ocm install` defaults to 2.x."""
    home = tmp_path / "h"
    one = _managed(home, "1.18.33", "1.18.33")
    _managed(home, "2.1.2", "opencode v2.1.2")
    environ = {"PATH": str(tmp_path / "empty"), "OCM_OPENCODE": "1.18.33"}
    found = find_binary(Settings.load(home=home, environ=environ))
    assert (found.path, found.version, found.line, found.source) == (
        str(one), "1.18.33", Line.V1, "explicit"
    )  # fmt: skip
    with pytest.raises(
        BinaryError, match=r"not installed .*: run `ocm install --version 1\.17\.0`"
    ):
        find_binary(Settings.load(home=home, environ={**environ, "OCM_OPENCODE": "1.17.0"}))


def test_an_instance_chooses_an_installed_version_or_a_path(tmp_path: Path) -> None:
    home = tmp_path / "h"
    two = _managed(home, "2.1.2", "opencode v2.1.2")
    other = _fake(tmp_path / "opencode-1", "1.18.33")
    settings = Settings.load(home=home, opencode=str(other), environ={})
    assert choose(settings, "2.1.2").path == str(two)
    assert choose(settings, "2.1.2").line is Line.V2
    assert choose(settings, str(other)).source == "instance"
    assert choose(settings, None).path == str(other)  # no choice: the resolution order
    with pytest.raises(BinaryError, match=r"not installed .*: run `ocm install --version 2\.0\.0`"):
        choose(settings, "2.0.0")
    with pytest.raises(BinaryError, match="does not know"):
        choose(settings, "3.0.0")
    with pytest.raises(BinaryError, match="does not exist"):
        choose(settings, str(tmp_path / "missing"))


def _fake_npm(bindir: Path, log: Path) -> None:
    """An npm that records its arguments and lays out the package it was asked for."""
    bindir.mkdir()
    npm = bindir / "npm"
    npm.write_text(
        f"""#!{sys.executable}
import os, sys
args = sys.argv[1:]
open({str(log)!r}, "a").write(" ".join(args) + "\\n")
prefix = args[args.index("--prefix") + 1]
package = args[-1]
version = package.rsplit("@", 1)[1]
if package.startswith("@opencode/cli@"):
    exe = os.path.join(prefix, "node_modules", "@opencode", "cli", "bin", "opencode.exe")
    said = "opencode v" + version
else:
    exe = os.path.join(prefix, "node_modules", "opencode-ai", "bin", "opencode.exe")
    said = version
os.makedirs(os.path.dirname(exe))
with open(exe, "w") as handle:
    handle.write("#!/bin/sh\\necho " + said + "\\n")
os.chmod(exe, 0o755)
"""
    )
    npm.chmod(0o755)


def test_install_takes_the_package_of_the_versions_line(tmp_path: Path) -> None:
    log = tmp_path / "npm.log"
    _fake_npm(tmp_path / "bin", log)
    settings = Settings.load(
        home=tmp_path / "h", environ={"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)}
    )
    two = install(settings, "2.1.2")
    one = install(settings, "1.18.33")
    packages = [line.split()[-1] for line in log.read_text().splitlines()]
    assert packages == ["@opencode/cli@2.1.2", "opencode-ai@1.18.33"]
    assert (two.version, two.line, two.source) == ("2.1.2", Line.V2, "managed")
    assert two.path == str(
        tmp_path / "h/opencode/2.1.2/node_modules/@opencode/cli/bin/opencode.exe"
    )
    assert (one.version, one.line) == ("1.18.33", Line.V1)
    assert install(settings, "2.1.2").path == two.path  # idempotent: npm is not run again
    assert len(log.read_text().splitlines()) == 2
    with pytest.raises(BinaryError, match="does not know"):
        install(settings, "3.0.0")
    assert len(log.read_text().splitlines()) == 2


def test_a_version_npm_does_not_have_is_named_with_how_to_list_them() -> None:
    from opencode_manager.instances.binary import npm_failure

    output = "npm error code ETARGET\nnpm error notarget No matching version found for x\n"
    message = npm_failure("opencode-ai@9.9.9", 1, output)
    assert message == (
        "OpenCode 9.9.9 is not on npm (opencode-ai has no version 9.9.9); "
        "`npm view opencode-ai versions` lists them"
    )
    assert npm_failure("opencode-ai@1.2.3", 1, "npm error code E404\n").endswith(
        "npm error code E404"
    )


# -- running `--version`: slow is not failed ---------------------------------------------------
def _slow_fake(path: Path, version: str, *, log: Path, slow_runs: int, seconds: float) -> Path:
    """A binary whose first `slow_runs` runs hang for `seconds` (a loaded machine loading
    200 MB); every run is logged."""
    path.write_text(
        "#!/bin/sh\n"
        f'echo run >> "{log}"\n'
        f'if [ "$(wc -l < "{log}")" -le {slow_runs} ]; then exec sleep {seconds}; fi\n'
        f"echo {version}\n"
    )
    path.chmod(0o755)
    return path


def test_a_version_run_that_gets_no_answer_is_run_again_with_a_longer_deadline(
    tmp_path: Path,
) -> None:
    log = tmp_path / "runs.log"
    exe = _slow_fake(tmp_path / "opencode", "1.18.33", log=log, slow_runs=1, seconds=30)
    settings = Settings.load(home=tmp_path / "h", opencode=str(exe),
                             environ={"OCM_VERSION_TIMEOUT": "0.5"})  # fmt: skip
    assert settings.version_timeout == 0.5
    assert find_binary(settings).version == "1.18.33"
    assert len(log.read_text().splitlines()) == 2
    assert find_binary(settings).version == "1.18.33"  # cached: not run again
    assert len(log.read_text().splitlines()) == 2


def test_a_version_run_that_never_answers_says_what_was_slow(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    exe = _slow_fake(tmp_path / "opencode", "1.18.33", log=log, slow_runs=99, seconds=30)
    settings = Settings.load(home=tmp_path / "h", opencode=str(exe),
                             environ={"OCM_VERSION_TIMEOUT": "0.2"})  # fmt: skip
    began = time.monotonic()
    with pytest.raises(BinaryError) as info:
        find_binary(settings)
    message = str(info.value)
    assert f"`{exe} --version` did not answer: 2 runs took over 0.6 s" in message
    assert "raise OCM_VERSION_TIMEOUT (now 0.2 s)" in message
    assert "load average" in message or "cores" in message  # what was slow
    assert "\n" not in message
    assert len(log.read_text().splitlines()) == 2
    assert time.monotonic() - began < 10


def test_concurrent_first_callers_share_one_version_run(tmp_path: Path) -> None:
    """Ten `ocm start` at once on a fresh home each ran the 200 MB binary, and timed out
    on a loaded machine: the first caller runs it, the others wait and read its result."""
    log = tmp_path / "runs.log"
    exe = tmp_path / "opencode"
    exe.write_text(f'#!/bin/sh\necho run >> "{log}"\nsleep 0.5\necho 1.18.33\n')
    exe.chmod(0o755)
    settings = Settings.load(home=tmp_path / "h", opencode=str(exe), environ={})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(lambda _: probe_version(str(exe), settings), range(8)))
    assert versions == ["1.18.33"] * 8
    assert len(log.read_text().splitlines()) == 1


def test_the_version_deadline_is_a_setting_checked_like_the_others(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="invalid OCM_VERSION_TIMEOUT '0'"):
        Settings.load(home=tmp_path, environ={"OCM_VERSION_TIMEOUT": "0"})
