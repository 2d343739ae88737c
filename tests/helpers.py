"""Helpers for tests: run the real CLI, poll with deadlines, check error contracts."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (
            f"ocm {' '.join(self.args)} -> rc={self.returncode}\n"
            f"stdout: {self.stdout}\nstderr: {self.stderr}"
        )


Ocm = Callable[..., Result]


def run_ocm(
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = False,
    timeout: float = 240,
    cwd: str | None = None,
    input: str | None = None,
) -> Result:
    """Run the real entry point (`python -m opencode_manager`) as a user would (`timeout`:
    stretched for a loaded machine, `patient`)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "opencode_manager", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=patient(timeout),
        cwd=cwd,
        input=input,
        check=False,
    )
    result = Result(list(args), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(str(result))
    return result


def run_in_terminal(
    *args: str, env: dict[str, str] | None = None, columns: int = 80, timeout: float = 120
) -> str:
    """Run the real entry point with stdout and stderr on a pseudo-terminal `columns` wide,
    as a person at a terminal would; return what the screen received."""
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", *args],
        env={**os.environ, **(env or {}), "TERM": "xterm", "COLUMNS": str(columns)},
        stdin=subprocess.DEVNULL, stdout=child, stderr=child,
    )  # fmt: skip
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=patient(timeout))
    os.close(parent)
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def assert_one_line_error(result: Result, code: int, *needles: str) -> None:
    """The contract for bad input: one line on stderr, a documented code, no traceback."""
    assert result.returncode == code, str(result)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, str(result)
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], str(result)


#: Test deadlines are for a busy machine: two cores shared by other engineers' suites, a
#: load average of 15 to 35, where what takes a second alone takes ten. `patient` stretches
#: a deadline further while the machine is loaded beyond its cores (up to MAX_STRETCH
#: times), and OCM_TEST_PATIENCE multiplies every one (e.g. 2 on a slower machine still).
MAX_STRETCH = 4.0


def patience() -> float:
    """How much longer than on a quiet machine a wait may take now."""
    try:
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        load = 1.0
    return min(MAX_STRETCH, max(1.0, load)) * float(os.environ.get("OCM_TEST_PATIENCE", "1"))


def patient(seconds: float) -> float:
    """A deadline of `seconds` (what the wait needs on a quiet machine, with a margin),
    stretched for the machine as it is now (`patience`)."""
    return seconds * patience()


def wait_for(
    condition: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition",
) -> object:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds
    (stretched for a loaded machine: `patient`)."""
    limit = patient(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:.0f} s waiting for {message}")
        time.sleep(interval)  # polling a condition with a deadline


@contextlib.contextmanager
def popened(argvs: list[list[str]], **kwargs: Any) -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started together (text pipes as `kwargs` say), each ended and its pipes
    closed when the block ends, however it ends: a failed assertion on the first used to
    leave the others' pipes open (ResourceWarnings blamed on the worker's next test)."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for argv in argvs:
            procs.append(subprocess.Popen(argv, text=True, **kwargs))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()  # the test's own child, by its handle
            proc.communicate()  # reaps it and closes its pipes


# -- process trees without OpenCode ---------------------------------------------------------
#: A process that starts one child of its own (a "leaf" that only sleeps), then sleeps.
SLEEPER = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "time.sleep(600)\n"
)


def fake_keeper_package(base: Path) -> Path:
    """A directory to run `python -m opencode_manager.keeper` in, where that module is a
    SLEEPER: a process whose argv is exactly a keeper's, without a registry or a server."""
    package = base / "fake-keeper" / "opencode_manager" / "keeper"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(SLEEPER)
    return package.parent.parent


def spawn_sleeper(
    argv: list[str] | None = None,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    new_session: bool = True,
) -> psutil.Process:
    """A SLEEPER (or `argv`, which must run one) whose own child is already running."""
    proc = psutil.Popen(
        argv or [sys.executable, "-c", SLEEPER],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=new_session,
    )
    wait_for(proc.children, timeout=30, message=f"the child of {argv or 'a sleeper'}")
    return proc


def kill_trees(roots: list[psutil.Process]) -> None:
    """SIGKILL each process and its descendants (they are the test's own) and reap them."""
    members = []
    for root in roots:
        with contextlib.suppress(psutil.Error):
            members += [root, *root.children(recursive=True)]
    for proc in members:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(members, timeout=10)


def model_sends(model: Any, prompts: list[str]) -> dict[str, int]:
    """How many turns the scripted model was asked to start for each prompt (tool follow-ups
    of the same turn are not new sends; title requests have no tools)."""
    wanted = set(prompts)
    counts: dict[str, int] = {}
    for entry in model.requests.entries():
        text = entry["last_user_text"]
        if entry["has_tools"] and not entry["followup"] and text in wanted:
            counts[text] = counts.get(text, 0) + 1
    return counts
