"""Helpers for tests: run the CLI (in this process, or as a real process), poll with deadlines,
check error contracts."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import inspect
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

from opencode_manager.registry import Registry


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
    """Run the real entry point (`python -m opencode_manager`) as a user would, in a process of
    its own: for what only a process shows (one line and an exit code end to end, signals,
    start-up imports). Everything else uses the in-process `ocm` fixture (`invoke_ocm`).
    `timeout` is stretched for a loaded machine (`patient`)."""
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


#: What a process of its own gets from the environment `run_ocm` hands it, pinned for the
#: in-process runner: no colour forced on, 80 columns for whatever is not a pipe-wide table.
_PIPE_ENV: dict[str, str | None] = {
    "NO_COLOR": "1",
    "COLUMNS": "80",
    "LINES": "24",
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "TTY_INTERACTIVE": None,
    "CLICOLOR_FORCE": None,
}


def invoke_ocm(
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = False,
    timeout: float = 240,
    cwd: str | None = None,
    input: str | None = None,
) -> Result:
    """Run `ocm ARGS` in this process: `opencode_manager.cli.main`, the function the console
    script and `python -m opencode_manager` call, inside click's `CliRunner` isolation (its
    own stdin, stdout and stderr, and `env` over the test's environment), with the exit code
    `sys.exit(main())` would give. What a process of its own got for free is rebuilt for each
    call: rich's consoles (made for a pipe, as `python -m` makes them), the signal handlers
    and the working directory are put back, and a thread left running (which would keep a real
    process from exiting) fails the call. The `timeout` is pytest-timeout's here; a test that
    needs a process of its own (signals, start-up imports, a hang, commands at once) uses
    `run_ocm`."""
    del timeout  # the same signature as run_ocm; pytest-timeout bounds an in-process call
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop in this thread: as in a process of its own
    else:
        raise AssertionError("a command's asyncio.run needs a thread without a loop: use run_ocm")
    if not _ONE_AT_A_TIME.acquire(blocking=False):  # stdio and os.environ are the process's
        raise AssertionError("the in-process runner runs one command at a time: use run_ocm")
    try:
        return _invoke(args, env, check, cwd, input)
    finally:
        _ONE_AT_A_TIME.release()


_ONE_AT_A_TIME = threading.Lock()


def _invoke(
    args: tuple[str, ...],
    env: dict[str, str] | None,
    check: bool,
    cwd: str | None,
    input: str | None,
) -> Result:
    from click import formatting
    from click.testing import CliRunner

    from opencode_manager.cli import main

    # click 8.1 mixes stderr into stdout unless told; from 8.2 on it is always apart.
    apart: dict[str, Any] = (
        {"mix_stderr": False}
        if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters
        else {}
    )
    runner = CliRunner(**apart)
    width = formatting.FORCED_WIDTH  # CliRunner forces 80; a process gets the terminal's
    threads = set(threading.enumerate())
    with (
        _kept_signals(),
        _no_exec(),
        _working_directory(cwd),
        runner.isolation(input=input, env={**_PIPE_ENV, **(env or {})}) as streams,
        _pipe_consoles(),
    ):
        formatting.FORCED_WIDTH = width
        try:
            code = _exit_code(main(list(args)))
        except SystemExit as exc:  # click's completion (and anything else) may exit
            code = _exit_code(exc.code)
        except BaseException:  # what escapes `main` is a traceback and exit 1 in a process
            sys.stderr.write(traceback.format_exc())
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        stdout, stderr = (_text(stream.getvalue()) for stream in streams[:2])
    result = Result(list(args), code, stdout, stderr)
    _no_thread_left(threads, result)
    if check and code != 0:
        raise AssertionError(str(result))
    return result


def _exit_code(value: object) -> int:
    """What `sys.exit(value)` makes the process's exit code (a message goes to stderr)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    sys.stderr.write(f"{value}\n")
    return 1


def _text(data: bytes) -> str:
    """Decoded as `subprocess.run(text=True)` does: universal newlines."""
    return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")


@contextmanager
def _kept_signals() -> Iterator[None]:
    """Commands set SIGINT/SIGTERM handlers for their own process: put pytest's back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextmanager
def _no_exec() -> Iterator[None]:
    """`ocm attach` replaces its process with the TUI: never pytest's."""
    real = os.execvpe

    def refuse(*args: object) -> None:
        raise AssertionError("the command exec()s: run it with run_ocm")

    os.execvpe = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        os.execvpe = real


@contextmanager
def _working_directory(cwd: str | None) -> Iterator[None]:
    before = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


@contextmanager
def _pipe_consoles() -> Iterator[None]:
    """rich's consoles as a process on pipes makes them at import (width, colour system and
    NO_COLOR are read then), in every CLI module that holds one, for this call only."""
    from rich.console import Console

    from opencode_manager.cli import output

    fresh = {"out": output.stdout_console(), "err": output.stderr_console()}
    swapped: list[tuple[ModuleType, str, Console]] = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("opencode_manager.cli") or module is None:
            continue
        for attribute, console in fresh.items():
            held = getattr(module, attribute, None)
            if isinstance(held, Console):
                swapped.append((module, attribute, held))
                setattr(module, attribute, console)
    try:
        yield
    finally:
        for module, attribute, held in swapped:
            setattr(module, attribute, held)


def _no_thread_left(before: set[threading.Thread], result: Result) -> None:
    """A non-daemon thread still running would keep a real `ocm` from exiting."""
    deadline = time.monotonic() + 5
    while True:
        left = [
            t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
        ]
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{result}\nthreads left running: {left}")
        time.sleep(0.05)  # polling a condition with a deadline


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


def forge_row(registry: Registry, name: str, **columns: Any) -> None:
    """Write registry columns that no named transition writes together (a row claiming a
    reused PID, a row a killed driver left `starting`), to stage what ocm must survive. The
    only caller of the registry's private free-form write outside registry.py (checked by
    tests/test_layout.py)."""
    registry._update(name, **columns)
