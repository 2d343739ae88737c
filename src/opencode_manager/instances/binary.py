"""Finding, checking and installing the `opencode` binary, of either line.

Order: an explicit path or installed version (``--opencode`` / ``OCM_OPENCODE``: ``1.18.33``
keeps to 1.x), then ``PATH``, then ``~/.opencode/bin/opencode``, then the managed installs under
``$OCM_HOME/opencode/<version>`` (the pinned version's line first, 2.x, then newest first).
An instance may choose its own (`choose`): a version installed there, or a path. Checking a
version runs the binary (about a second), so results are cached per file identity; the version
decides the line (lines.py), and an unknown line is refused before anything starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import load
from ..errors import BinaryError, UsageError
from ..lines import (
    MIN_OPENCODE_VERSION,
    SUPPORTED_LINES,
    Line,
    is_supported,
    known_line,
    line_of,
    parse_version,
    pinned_version,
)
from ..settings import PINNED_OPENCODE_VERSION, Settings

_VERSION_ARG_RE = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
#: Runs of `opencode --version` before it fails: it is safe to run again, and a loaded
#: machine (ten `ocm start` at once on two busy cores) can take longer than any first
#: deadline; each run gets twice the deadline of the one before.
VERSION_ATTEMPTS = 2
LOCK_POLL = 0.05

__all__ = [
    "Binary", "candidates", "choose", "find_binary", "for_line", "install", "is_supported",
    "is_version", "managed_installs", "parse_version", "probe_version", "real_binary",
    "tui_argv",
]  # fmt: skip


@dataclass(frozen=True)
class Binary:
    """A usable opencode executable and its version."""

    path: str
    version: str
    source: str  # "explicit", "PATH", "~/.opencode", "managed", "instance"

    @property
    def line(self) -> Line:
        return line_of(self.version)


def is_version(text: str) -> bool:
    """`2.1.2` names an installed version; anything else is a path."""
    return bool(_VERSION_ARG_RE.match(text))


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
    """Managed binaries: the pinned version's line first, then the others; newest first in
    each."""
    root = settings.install_dir
    if not root.is_dir():
        return []
    pinned = parse_version(PINNED_OPENCODE_VERSION)
    versions = []
    for child in root.iterdir():
        parsed = parse_version(child.name)
        exe = _installed_executable(child) if parsed and is_version(child.name) else None
        if parsed and exe:
            other_line = pinned is not None and parsed[0] != pinned[0]
            versions.append(((not other_line, parsed), exe))
    return [exe for _, exe in sorted(versions, reverse=True)]


def managed_install(settings: Settings, version: str) -> Path | None:
    """The binary `ocm install --version VERSION` put under $OCM_HOME, if it did."""
    return _installed_executable(settings.install_dir / version) if is_version(version) else None


def _platform() -> str:
    system = {"Linux": "linux", "Darwin": "darwin"}.get(
        platform.system(), platform.system().lower()
    )
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return f"{system}-{machine}"


def _platform_package() -> str:
    return f"opencode-{_platform()}"


def _installed_executable(prefix: Path) -> Path | None:
    """The real binary inside an npm prefix (not a wrapper script, so we signal the server).

    1.x (`opencode-ai`): the platform package's binary. 2.x (`@opencode/cli`): `bin/
    opencode.exe`, which its postinstall makes a hard link of the variant that suits this
    machine (baseline, musl), else the platform package's."""
    modules = prefix / "node_modules"
    chosen = modules / "@opencode" / "cli" / "bin" / "opencode.exe"
    for path in (
        modules / _platform_package() / "bin" / "opencode",
        modules / f"{_platform_package()}-baseline" / "bin" / "opencode",
        modules / "opencode-ai" / "bin" / "opencode.exe",
        chosen,
        modules / "@opencode" / f"cli-{_platform()}" / "bin" / "opencode",
        modules / "@opencode" / f"cli-{_platform()}-baseline" / "bin" / "opencode",
        modules / ".bin" / "opencode",
    ):
        if path == chosen and _is_node_script(path):
            continue  # the package's placeholder: its postinstall did not run
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def _is_node_script(path: Path) -> bool:
    """A Node script (npm's wrapper, or a placeholder its postinstall replaces)."""
    try:
        with open(path, "rb") as handle:
            first = handle.read(256).split(b"\n", 1)[0]
    except OSError:
        return True
    return first.startswith(b"#!") and b"node" in first


def _cache_path(settings: Settings) -> Path:
    return settings.home / "binary-versions.json"


def probe_version(
    path: str,
    settings: Settings,
    *,
    timeout: float | None = None,
    attempts: int = VERSION_ATTEMPTS,
) -> str:
    """Run `opencode --version` (cached by path, size and mtime): `1.18.33` on 1.x,
    `opencode v2.1.2` on 2.x; the bare x.y.z either way.

    Processes that need the same version at once share one run: the first takes a lock
    and runs it, the others wait for it and read what it cached (ten concurrent `ocm
    start` on a fresh home used to load the 200 MB binary ten times, and time out).
    `timeout`: the first run's deadline (default: the OCM_VERSION_TIMEOUT setting)."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise BinaryError(f"opencode binary {path} not found: {exc.strerror}") from exc
    if not os.access(path, os.X_OK):
        raise BinaryError(f"opencode binary {path} is not executable; chmod +x it")
    key = f"{os.path.realpath(path)}:{stat.st_size}:{int(stat.st_mtime)}"
    first = settings.version_timeout if timeout is None else timeout
    cached = _read_cache(settings).get(key)
    if cached:
        return cached
    # Another process's run may take every attempt's deadline: wait that long for it.
    budget = sum(first * 2**n for n in range(attempts))
    with _probing(settings, key, wait=budget + 5.0):
        cached = _read_cache(settings).get(key)  # run by whoever held the lock
        if cached:
            return cached
        version = _run_version(path, settings, first, attempts)
        _write_cache(settings, key, version)
    return version


def _run_version(path: str, settings: Settings, timeout: float, attempts: int) -> str:
    deadline = timeout
    waited = 0.0
    for attempt in range(1, attempts + 1):
        try:
            out = subprocess.run(
                [path, "--version"],
                capture_output=True,
                text=True,
                timeout=deadline,
                stdin=subprocess.DEVNULL,
                env=dict(settings.environ),
                check=False,
            )
            break
        except subprocess.TimeoutExpired:  # killed: slow is not failed, run it again
            waited += deadline
            if attempt < attempts:
                deadline *= 2
                continue
            raise BinaryError(
                f"`{path} --version` did not answer: {attempts} runs took over "
                f"{waited:g} s in all ({load.describe()}: the machine is overloaded, or "
                "the binary hangs); "
                f"raise OCM_VERSION_TIMEOUT (now {timeout:g} s)"
            ) from None
        except (OSError, subprocess.SubprocessError) as exc:
            raise BinaryError(f"could not run {path} --version: {exc}") from exc
    text = (out.stdout or "").strip() or (out.stderr or "").strip()
    parsed = parse_version(text)
    if out.returncode != 0 or parsed is None:
        said = text.splitlines()[0] if text else f"exit code {out.returncode}"
        raise BinaryError(f"{path} does not look like opencode (--version said: {said})")
    return ".".join(str(p) for p in parsed)


def _read_cache(settings: Settings) -> dict[str, str]:
    try:
        cache = json.loads(_cache_path(settings).read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _write_cache(settings: Settings, key: str, version: str) -> None:
    cache_file = _cache_path(settings)
    cache = _read_cache(settings)
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


@contextlib.contextmanager
def _probing(settings: Settings, key: str, *, wait: float) -> Iterator[None]:
    """Held while this process runs `--version` of one binary (`key`): others wait, then
    read its result. A lock
    that cannot be had (an unwritable home) or is held longer than `wait` costs only a run
    of our own."""
    try:
        settings.locks_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        fd = os.open(settings.locks_dir / f"binary-version-{digest}.lock",
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # fmt: skip
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break  # a stuck holder: run it ourselves
                time.sleep(LOCK_POLL)  # waiting for the other run, with the deadline above
        yield
    finally:
        os.close(fd)  # releases the lock


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


def _check(path: str, version: str, source: str) -> Binary:
    """The binary, if its version is of a line ocm speaks; else one line that names the
    version, the supported lines and the fix that works where the binary came from."""
    try:
        line_of(version)
    except BinaryError:
        parsed = parse_version(version)
        minimum = parse_version(MIN_OPENCODE_VERSION)
        old = parsed is not None and minimum is not None and parsed < minimum
        if source == "explicit":
            fix = (
                f"point --opencode/OCM_OPENCODE at a {'newer' if old else '1.x or 2.x'} one, "
                "or unset it and run `ocm install`"
            )
        elif source == "instance":
            fix = "choose a 1.x or 2.x binary for the instance"
        else:
            fix = "run `ocm install` or " + ("upgrade opencode" if old else "install a 1.x or 2.x")
        if old:
            raise BinaryError(
                f"opencode {version} at {path} is too old: opencode-manager needs >= "
                f"{MIN_OPENCODE_VERSION}; {fix}"
            ) from None
        raise BinaryError(
            f"opencode {version} at {path} is not a line opencode-manager supports "
            f"(it runs {SUPPORTED_LINES}); {fix}"
        ) from None
    return Binary(path=path, version=version, source=source)


def find_binary(settings: Settings) -> Binary:
    """The binary to run, version-checked, or a BinaryError that says how to get one."""
    for source, path in candidates(settings):
        if source == "explicit" and is_version(path):  # OCM_OPENCODE=1.18.33: stay on a line
            return _installed(settings, path, "explicit")
        if not os.path.isfile(path):
            if source == "explicit" and os.path.isdir(path):
                raise BinaryError(
                    f"--opencode/OCM_OPENCODE {path} is a directory, not the opencode binary; "
                    "point it at the executable (e.g. ~/.opencode/bin/opencode)"
                )
            if source == "explicit":
                raise BinaryError(
                    f"opencode binary {path} (from --opencode/OCM_OPENCODE) does not exist"
                )
            continue
        path = real_binary(path)
        return _check(path, probe_version(path, settings), source)
    raise BinaryError(
        "opencode binary not found (looked in PATH, ~/.opencode/bin and OCM_HOME); "
        "run `ocm install` or set OCM_OPENCODE=/path/to/opencode"
    )


def _installed(settings: Settings, version: str, source: str) -> Binary:
    """The binary `ocm install --version VERSION` put in $OCM_HOME, checked; a version of no
    supported line is refused before any lookup."""
    line_of(version)
    exe = managed_install(settings, version)
    if exe is None:
        raise BinaryError(
            f"opencode {version} is not installed in {settings.install_dir}: run "
            f"`ocm install --version {version}`"
        )
    return _check(str(exe), probe_version(str(exe), settings), source)


def choose(settings: Settings, choice: str | None) -> Binary:
    """An instance's binary: its own choice (a version installed under $OCM_HOME, or a
    path), else the resolution order of `find_binary`."""
    if choice is None:
        return find_binary(settings)
    if is_version(choice):
        return _installed(settings, choice, "managed")
    if not os.path.isfile(choice):
        raise BinaryError(f"opencode binary {choice} (chosen for the instance) does not exist")
    path = real_binary(choice)
    return _check(path, probe_version(path, settings), "instance")


#: How long `npm install` of OpenCode may take (a 200 MB download on a slow line).
NPM_TIMEOUT = 900.0


def npm_failure(package: str, returncode: int, output: str) -> str:
    """What a failed `npm install` means, in one line (pure): a version npm does not have is
    named as such, with the command that lists the ones it has."""
    name, _, version = package.rpartition("@")
    if "ETARGET" in output or "No matching version" in output:
        return (
            f"OpenCode {version} is not on npm ({name} has no version {version}); "
            f"`npm view {name} versions` lists them"
        )
    lines = [ln for ln in output.splitlines() if "npm error" in ln or "npm ERR!" in ln]
    detail = lines[0] if lines else f"exit code {returncode}"
    return f"npm install {package} failed: {detail}"


def for_line(settings: Settings, line: Line, preferred: str | None = None) -> Binary:
    """A binary of `line`, to run one of OpenCode's own clients (its TUI) on a server of that
    line: `preferred` (the instance's own binary) when it still is one, else the resolution
    order's (`find_binary`) when it is, else the newest install of the line under $OCM_HOME.
    A 1.x TUI on a 2.x server (or the reverse) would only fail on routes it does not know."""
    tried: list[str] = []
    if preferred and os.path.isfile(preferred):
        with contextlib.suppress(BinaryError):
            found = _check(preferred, probe_version(preferred, settings), "instance")
            if found.line is line:
                return found
            tried.append(f"{preferred} ({found.version})")
    with contextlib.suppress(BinaryError):
        found = find_binary(settings)
        if found.line is line:
            return found
        tried.append(f"{found.path} ({found.version})")
    for exe in managed_installs(settings):
        version = exe.relative_to(settings.install_dir).parts[0]
        if known_line(version) is line:
            return _check(str(exe), probe_version(str(exe), settings), "managed")
    seen = f" (found {', '.join(tried)})" if tried else ""
    raise BinaryError(
        f"this needs an OpenCode {line.label} binary{seen}: run `ocm install --version "
        f"{pinned_version(line)}`, or point --opencode/OCM_OPENCODE at one"
    )


def tui_argv(
    binary: str,
    line: Line,
    url: str,
    *,
    session_id: str | None = None,
    directory: str | None = None,
) -> list[str]:
    """OpenCode's TUI on the server at `url`: 1.x `opencode attach URL [--session ID] [--dir
    DIR]`; 2.x has no attach command: `opencode --server URL [--session ID] [DIR]`.
    Credentials go by environment, never here (argv is world-readable)."""
    if line is Line.V2:
        argv = [binary, "--server", url]
        if session_id:
            argv += ["--session", session_id]
        return [*argv, directory] if directory else argv
    argv = [binary, "attach", url]
    if session_id:
        argv += ["--session", session_id]
    return [*argv, "--dir", directory] if directory else argv


def install(settings: Settings, version: str = PINNED_OPENCODE_VERSION) -> Binary:
    """Install OpenCode `version` from npm under $OCM_HOME/opencode/<version> (idempotent):
    the line's package, `opencode-ai` for 1.x, `@opencode/cli` for 2.x."""
    if not _VERSION_ARG_RE.match(version):
        raise UsageError(f"invalid version {version!r}: expected x.y.z, e.g. 1.18.33")
    package = f"{line_of(version).npm_package}@{version}"
    settings.ensure_home()
    prefix = settings.install_dir / version
    existing = _installed_executable(prefix)
    if existing:
        return _check(str(existing), probe_version(str(existing), settings), "managed")
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
                package,
            ],
            capture_output=True,
            text=True,
            env=dict(settings.environ),
            stdin=subprocess.DEVNULL,
            timeout=NPM_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BinaryError(
            f"npm install {package} did not finish within {NPM_TIMEOUT:.0f} s "
            f"({load.describe()}); check that npm reaches its registry, then run "
            "`ocm install` again"
        ) from exc
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BinaryError(f"npm install {package} failed: {exc}") from exc
    if out.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BinaryError(npm_failure(package, out.returncode, out.stderr or out.stdout))
    if _installed_executable(staging) is None:
        shutil.rmtree(staging, ignore_errors=True)
        raise BinaryError(
            f"npm installed {package} but no binary for this platform ({_platform()}) came with it"
        )
    # Publish atomically so a concurrent reader never sees half an install.
    try:
        os.rename(staging, prefix)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process won the race
    exe = _installed_executable(prefix)
    if exe is None:
        raise BinaryError(f"install of opencode {version} under {prefix} is incomplete")
    return _check(str(exe), probe_version(str(exe), settings), "managed")
