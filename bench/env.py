"""The isolated world a benchmark run lives in, and leaving nothing of it behind.

Everything runs with a temporary OCM_HOME, HOME and XDG dirs, the pinned OpenCode binary and
the scripted model (as its own process, so it never shares a GIL with what is measured). Every
process started here inherits a marker variable; at the end any live process carrying it is
reported and ended (it is provably ours).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from opencode_manager.instances.binary import is_version, managed_install, parse_version
from opencode_manager.lines import PINNED_VERSIONS, Line, line_of
from opencode_manager.scripted_model import opencode_config
from opencode_manager.settings import Settings
from opencode_manager.testing import marked_processes, sweep

from .measure import BenchError

ROOT = Path(__file__).resolve().parent.parent
MARK = "OPENCODE_MANAGER_BENCH_MARK"  # not OCM_*: servers must inherit it too
#: The installs scripts/setup makes (both lines), shared with the tests.
CACHE = ROOT / ".cache" / "ocm"
#: The lines `python -m bench` measures when `--opencode` is not given: the tested version of
#: each (scripts/setup installs both); `--opencode 2.1.2` measures one line alone.
DEFAULT_LINES = (PINNED_VERSIONS[Line.V1], PINNED_VERSIONS[Line.V2])
DEFAULT_OPENCODE = DEFAULT_LINES[0]


def resolve_opencode(choice: str | None) -> Path:
    """The binary to measure: a version scripts/setup (or `ocm install`) put in .cache/ocm,
    or a path."""
    choice = choice or DEFAULT_OPENCODE
    if not is_version(choice):
        return Path(choice)
    found = managed_install(Settings.load(home=CACHE, environ={}), choice)
    if found is None:
        raise BenchError(
            f"opencode {choice} is not installed in {CACHE}; run scripts/setup or "
            f"`OCM_HOME={CACHE} ocm install --version {choice}`"
        )
    return found


STOP_TIMEOUT = 60.0


def compile_package() -> None:
    """Write the package's bytecode, as `pip install` of its wheel does: a clone (or an
    environment with PYTHONDONTWRITEBYTECODE) has none, and every `ocm` command measured would
    compile what it imports (tens of ms)."""
    import compileall

    import opencode_manager

    compileall.compile_dir(Path(opencode_manager.__file__).parent, quiet=1)


def wait_for_line(
    path: Path, pattern: str, proc: subprocess.Popen[Any], timeout: float = 30.0
) -> re.Match[str]:
    """Poll a process's output file until a line matches (or it exits, or time runs out)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.is_file() else ""
        match = regex.search(text)
        if match:
            return match
        if proc.poll() is not None:
            raise BenchError(f"{proc.args!r} exited {proc.returncode}: {text[-400:]}")
        time.sleep(0.02)  # polling a file for a line, with a deadline
    raise BenchError(f"no line matching {pattern!r} from {proc.args!r} within {timeout:.0f} s")


class BenchEnv:
    """Temporary homes, the scripted model, the `ocm` command, and the cleanup of it all."""

    def __init__(self, opencode: Path | None = None) -> None:
        opencode = opencode or resolve_opencode(None)
        if not opencode.is_file():
            raise BenchError(f"no opencode binary at {opencode}; run scripts/setup")
        self.opencode = str(opencode)
        self.python = sys.executable
        self.ocm = str(Path(sys.executable).parent / "ocm")
        self.mark = f"bench-{uuid.uuid4().hex[:12]}"
        self.base = Path(tempfile.mkdtemp(prefix="ocm-bench-"))
        self.project = self.base / "project"
        self.project.mkdir()
        self.env = self._isolated_env()
        self._owned: list[subprocess.Popen[Any]] = []
        self.model_url = ""
        self.config_content = ""
        # The line decides the baselines' commands and routes (`opencode run --attach` and
        # `/session` on 1.x, `opencode run --server` and `/api/...` on 2.x).
        self.line = line_of(self.opencode_version())

    def _isolated_env(self) -> dict[str, str]:
        home = self.base / "home"
        # PYTHONDONTWRITEBYTECODE goes too: an installed package has its bytecode (pip
        # compiles a wheel's modules), and without it every `ocm` command measured here would
        # compile the modules it imports again (tens of ms on every command).
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENCODE_", "OCM_"))
            and k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
        }
        env.update(
            {
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_DATA_HOME": str(home / ".local" / "share"),
                "XDG_STATE_HOME": str(home / ".local" / "state"),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "OCM_HOME": str(self.base / "ocm"),
                "OCM_OPENCODE": self.opencode,
                "OPENCODE_DISABLE_MODELS_FETCH": "1",
                "npm_config_registry": "http://127.0.0.1:9/",  # fresh HOMEs: keep npm offline
                "npm_config_fetch_retries": "0",  # and failing at once, not after 75 s of retries
                "NO_COLOR": "1",
                MARK: self.mark,
            }
        )
        for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        return env

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> BenchEnv:
        try:
            compile_package()
            self._start_model()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start_model(self) -> None:
        out = self.base / "scripted-model.out"
        proc = self.spawn(
            [self.python, "-m", "opencode_manager.scripted_model", "--port", "0"], out
        )
        match = wait_for_line(out, r"listening on (http://\S+/v1)", proc)
        self.model_url = match.group(1)
        self.config_content = json.dumps(opencode_config(self.model_url))

    def spawn(
        self, argv: list[str], out: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[Any]:
        """A background process of ours (ended at close), its output in a file."""
        with open(out, "ab") as sink:
            proc = subprocess.Popen(
                argv,
                env=env or self.env,
                cwd=str(self.project),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self._owned.append(proc)
        return proc

    @staticmethod
    def end(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
        """End one of our processes by its Popen handle: SIGTERM, wait, SIGKILL."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> list[str]:
        """Stop the fleet and our processes; return any marked process that had to be killed."""
        if (Path(self.env["OCM_HOME"]) / "registry.db").exists():
            subprocess.run(
                [self.ocm, "stop", "--all"],
                env=self.env,
                cwd=str(self.project),
                capture_output=True,
                timeout=STOP_TIMEOUT,
                check=False,
            )
        for proc in reversed(self._owned):
            self.end(proc)
        self._owned.clear()
        leftovers = self.sweep()
        shutil.rmtree(self.base, ignore_errors=True)
        return leftovers

    def marked(self) -> list[psutil.Process]:
        return marked_processes(MARK, self.mark)

    def sweep(self, grace: float = 5.0) -> list[str]:
        """Kill processes carrying our marker that outlived the run (after a grace period)."""
        return sweep(MARK, self.mark, grace=grace)

    # -- ocm -------------------------------------------------------------------------------
    def server_env(self, **extra: str) -> dict[str, str]:
        """The environment for raw `opencode` processes: the scripted model wired in."""
        return {**self.env, "OPENCODE_CONFIG_CONTENT": self.config_content, **extra}

    def model_args(self) -> list[str]:
        """`ocm start` options wiring instances to the scripted model."""
        return [
            "--env",
            f"OPENCODE_CONFIG_CONTENT={self.config_content}",
            "--env",
            "OPENCODE_DISABLE_MODELS_FETCH=1",
        ]

    def ocm_run(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.ocm, *args],
            env=self.env,
            cwd=str(self.project),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError(
                f"ocm {' '.join(args[:3])} exited {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-400:]}"
            )
        return result

    def ocm_json(self, *args: str, timeout: float = 300.0) -> Any:
        return json.loads(self.ocm_run(*args, "--json", timeout=timeout).stdout)

    def start_fleet(self, count: int, *extra: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.ocm_json(
            "start", "-n", str(count), "--dir", str(self.project), *self.model_args(), *extra
        )
        return data

    def forget_all(self) -> None:
        """`ocm stop --all`, then `ocm rm` every instance (their private data goes too)."""
        self.ocm_run("stop", "--all", timeout=STOP_TIMEOUT)
        names = [row["name"] for row in self.ocm_json("ls", "--no-foreign")]
        if names:
            self.ocm_run("rm", *names)

    def credentials(self, name: str) -> dict[str, str]:
        data: dict[str, str] = self.ocm_json("env", name)
        return data

    def opencode_version(self) -> str:
        result = subprocess.run(
            [self.opencode, "--version"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        parsed = parse_version(result.stdout)  # 2.x says `opencode v2.1.2`
        return ".".join(map(str, parsed)) if parsed else result.stdout.strip() or "unknown"
