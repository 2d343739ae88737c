"""Finding, checking and installing the `opencode` binary.

Order: an explicit path (``--opencode`` / ``OCM_OPENCODE``), then ``PATH``, then
``~/.opencode/bin/opencode``, then the newest managed install under ``$OCM_HOME/opencode``.
Checking a version runs the binary (about a second), so results are cached per file identity.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import BinaryError, UsageError
from ..settings import MIN_OPENCODE_VERSION, PINNED_OPENCODE_VERSION, Settings

_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_VERSION_ARG_RE = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class Binary:
    """A usable opencode executable and its version."""

    path: str
    version: str
    source: str  # "explicit", "PATH", "~/.opencode", "managed"


def parse_version(text: str) -> tuple[int, int, int] | None:
    """Extract the first x.y.z from a version string."""
    match = _VERSION_RE.search(text)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def is_supported(version: str) -> bool:
    parsed = parse_version(version)
    minimum = parse_version(MIN_OPENCODE_VERSION)
    return parsed is not None and minimum is not None and parsed >= minimum


def candidates(settings: Settings) -> list[tuple[str, str]]:
    """Every place we would look, in order, as (source, path)."""
    found: list[tuple[str, str]] = []
    if settings.opencode:
        found.append(("explicit", settings.opencode))
        return found
    on_path = shutil.which("opencode", path=settings.environ.get("PATH", os.defpath))
    if on_path:
        found.append(("PATH", on_path))
    found.append(("~/.opencode", str(settings.user_home / ".opencode" / "bin" / "opencode")))
    for path in managed_installs(settings):
        found.append(("managed", str(path)))
    return found


def managed_installs(settings: Settings) -> list[Path]:
    """Managed binaries, newest version first."""
    root = settings.install_dir
    if not root.is_dir():
        return []
    versions = []
    for child in root.iterdir():
        parsed = parse_version(child.name)
        exe = _installed_executable(child)
        if parsed and exe:
            versions.append((parsed, exe))
    return [exe for _, exe in sorted(versions, reverse=True)]


def _platform_package() -> str:
    system = {"Linux": "linux", "Darwin": "darwin"}.get(
        platform.system(), platform.system().lower()
    )
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return f"opencode-{system}-{machine}"


def _installed_executable(prefix: Path) -> Path | None:
    """The real binary inside an npm prefix (not a wrapper script, so we signal the server)."""
    modules = prefix / "node_modules"
    for path in (
        modules / _platform_package() / "bin" / "opencode",
        modules / f"{_platform_package()}-baseline" / "bin" / "opencode",
        modules / "opencode-ai" / "bin" / "opencode.exe",
        modules / ".bin" / "opencode",
    ):
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def _cache_path(settings: Settings) -> Path:
    return settings.home / "binary-versions.json"


def probe_version(path: str, settings: Settings) -> str:
    """Run `opencode --version` (cached by path, size and mtime)."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise BinaryError(f"opencode binary {path} not found: {exc.strerror}") from exc
    if not os.access(path, os.X_OK):
        raise BinaryError(f"opencode binary {path} is not executable; chmod +x it")
    key = f"{os.path.realpath(path)}:{stat.st_size}:{int(stat.st_mtime)}"
    cache_file = _cache_path(settings)
    cache: dict[str, str] = {}
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    try:
        out = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            env=dict(settings.environ),
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BinaryError(f"could not run {path} --version: {exc}") from exc
    text = (out.stdout or "").strip() or (out.stderr or "").strip()
    parsed = parse_version(text)
    if out.returncode != 0 or parsed is None:
        first = text.splitlines()[0] if text else f"exit code {out.returncode}"
        raise BinaryError(f"{path} does not look like opencode (--version said: {first})")
    version = ".".join(str(p) for p in parsed)
    cache[key] = version
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")  # racing commands
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(cache))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a cache we cannot write only costs time
    return version


def real_binary(path: str) -> str:
    """The server binary itself when `path` is npm's Node wrapper script (opencode-ai's
    `bin/opencode` on 1.1.53-1.14.41): we must run, signal and measure the real server,
    not a wrapper whose PID is not the server's."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return path
    if not head.startswith(b"#!") or b"node" not in head.split(b"\n", 1)[0]:
        return path
    real = Path(os.path.realpath(path))
    for parent in real.parents:
        if parent.name != "node_modules":
            continue
        for modules in (parent / "opencode-ai" / "node_modules", parent):
            for package in (_platform_package(), f"{_platform_package()}-baseline"):
                exe = modules / package / "bin" / "opencode"
                if exe.is_file() and os.access(exe, os.X_OK):
                    return str(exe)
        break
    raise BinaryError(
        f"{path} is npm's Node wrapper, and the real opencode binary for this platform "
        f"({_platform_package()}) was not found beside it; point OCM_OPENCODE at the real "
        "binary, or run `ocm install`"
    )


def find_binary(settings: Settings) -> Binary:
    """The binary to run, version-checked, or a BinaryError that says how to get one."""
    tried: list[str] = []
    for source, path in candidates(settings):
        if not os.path.isfile(path):
            if source == "explicit":
                raise BinaryError(
                    f"opencode binary {path} (from --opencode/OCM_OPENCODE) does not exist"
                )
            tried.append(path)
            continue
        path = real_binary(path)
        version = probe_version(path, settings)
        if not is_supported(version):
            fix = (
                "point --opencode/OCM_OPENCODE at a newer one, or unset it and run `ocm install`"
                if source == "explicit"
                else "run `ocm install` or upgrade opencode"
            )
            raise BinaryError(
                f"opencode {version} at {path} is too old: opencode-manager needs >= "
                f"{MIN_OPENCODE_VERSION}; {fix}"
            )
        return Binary(path=path, version=version, source=source)
    raise BinaryError(
        "opencode binary not found (looked in PATH, ~/.opencode/bin and OCM_HOME); "
        "run `ocm install` or set OCM_OPENCODE=/path/to/opencode"
    )


def install(settings: Settings, version: str = PINNED_OPENCODE_VERSION) -> Binary:
    """Install `opencode-ai@version` from npm under $OCM_HOME/opencode/<version> (idempotent)."""
    if not _VERSION_ARG_RE.match(version):
        raise UsageError(f"invalid version {version!r}: expected x.y.z, e.g. 1.18.33")
    if not is_supported(version):
        raise BinaryError(
            f"opencode {version} is too old: opencode-manager needs >= {MIN_OPENCODE_VERSION}"
        )
    settings.ensure_home()
    prefix = settings.install_dir / version
    existing = _installed_executable(prefix)
    if existing:
        return Binary(
            path=str(existing), version=probe_version(str(existing), settings), source="managed"
        )
    npm = shutil.which("npm", path=settings.environ.get("PATH", os.defpath))
    if not npm:
        raise BinaryError(
            "npm not found: install Node.js and npm (https://nodejs.org), "
            "or point OCM_OPENCODE at an opencode binary"
        )
    staging = settings.install_dir / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        out = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
                str(staging),
                f"opencode-ai@{version}",
            ],
            capture_output=True,
            text=True,
            env=dict(settings.environ),
            stdin=subprocess.DEVNULL,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BinaryError(f"npm install opencode-ai@{version} failed: {exc}") from exc
    if out.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        lines = [ln for ln in (out.stderr or out.stdout).splitlines() if "npm error" in ln]
        detail = lines[0] if lines else f"exit code {out.returncode}"
        raise BinaryError(f"npm install opencode-ai@{version} failed: {detail}")
    if _installed_executable(staging) is None:
        shutil.rmtree(staging, ignore_errors=True)
        raise BinaryError(
            f"npm installed opencode-ai@{version} but no binary for this platform "
            f"({_platform_package()}) came with it"
        )
    # Publish atomically so a concurrent reader never sees half an install.
    try:
        os.rename(staging, prefix)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process won the race
    exe = _installed_executable(prefix)
    if exe is None:
        raise BinaryError(f"install of opencode {version} under {prefix} is incomplete")
    return Binary(path=str(exe), version=probe_version(str(exe), settings), source="managed")
