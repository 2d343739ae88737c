"""Processes we can prove are ours, and how to end them.

A PID alone proves nothing (PIDs are reused), so every signal goes to a process whose start
time matches the one recorded when we started it. Ending a server follows circus and uvicorn:
SIGTERM to its process group, wait, SIGKILL; then every descendant we saw before the first
signal, because OpenCode runs bash-tool commands in their own sessions and does not stop them
(OPENCODE-FACTS §4): killing the group alone would orphan them.

What a process *is* (a keeper, a server) is read from its argv, argument by argument: a
substring of the joined command line would take `python3 -m http.server` for a server. And no
cleanup ever reaches into another instance's tree: an agent that runs `ocm start b` (or ocm's
MCP server doing it for OpenCode) leaves b's keeper re-parented to our keeper, the nearest
child subreaper, so a keeper's descendants can hold whole other instances. `spared` says which
processes head such a tree (another keeper, or another instance's launch marker); every walk
below prunes them with their descendants.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import psutil

from .models import KEEPER_CMD, SERVER_CMD, ProcessIdentity

# psutil derives create_time from boot time and clock ticks; allow for rounding.
_CTIME_TOLERANCE = 0.05
_PR_SET_CHILD_SUBREAPER = 36
# An OpenCode program: the binary (`opencode`, npm's `opencode-linux-x64/bin/opencode`,
# `opencode.exe`), or a script or module of that name run by a shell or an interpreter.
_OPENCODE_PROGRAM = re.compile(r"\.?opencode(?:[-_.].*)?", re.IGNORECASE)
# Python options that take the next argument as their value (python -X dev -m ...).
_PYTHON_VALUE_OPTIONS = ("-X", "-W", "--check-hash-based-pycs")

#: Whether a process heads a tree that is not ours to end (see `spared`).
Spare = Callable[[psutil.Process], bool]


# -- what a process is, from its argv (pure) -------------------------------------------------------
def is_keeper_argv(argv: Sequence[str]) -> bool:
    """`python [options] -m opencode_manager.keeper ...`: the module run by the interpreter
    itself, not an argument of some other program or script."""
    args = iter(argv[1:])
    for arg in args:
        if arg == "-m":
            return next(args, None) == KEEPER_CMD
        if arg.startswith("-m"):
            return arg == "-m" + KEEPER_CMD  # python -mopencode_manager.keeper
        if arg in _PYTHON_VALUE_OPTIONS:
            next(args, None)
        elif not arg.startswith("-") or arg == "-c" or arg == "-":
            return False  # a script, `-c code` or stdin: whatever follows is its arguments
    return False


def is_server_argv(argv: Sequence[str]) -> bool:
    """`opencode serve ...`: an OpenCode program (the binary, or a wrapper script of that name
    run by a shell or an interpreter) with `serve` as the very next, separate argument."""
    for i, arg in enumerate(argv[:3]):
        program = os.path.basename(arg)
        if _OPENCODE_PROGRAM.fullmatch(program) and argv[i + 1 : i + 2] == [SERVER_CMD]:
            return True
    return False


def argv_is(cmd: str, argv: Sequence[str]) -> bool:
    """Whether argv is what `cmd` (a ProcessIdentity.cmd) says the process is."""
    if cmd == KEEPER_CMD:
        return is_keeper_argv(argv)
    if cmd == SERVER_CMD:
        return is_server_argv(argv)
    return cmd in argv  # anything else: a whole argument, never a substring


def identity_of(pid: int) -> ProcessIdentity | None:
    try:
        return ProcessIdentity(pid, psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def identity_with(pid: int, cmd: str | None) -> ProcessIdentity | None:
    """The identity of a live process, recording what it must be (see ProcessIdentity.cmd)."""
    found = identity_of(pid)
    return ProcessIdentity(found.pid, found.create_time, cmd) if found else None


def verified(identity: ProcessIdentity | None) -> psutil.Process | None:
    """The live process with this exact identity, or None (gone, zombie, or a stranger).

    A stranger is a process whose start time differs (the PID was reused) or, when the
    identity says what the process is, whose command line does not say so.
    """
    if identity is None:
        return None
    try:
        proc = psutil.Process(identity.pid)
        if abs(proc.create_time() - identity.create_time) > _CTIME_TOLERANCE:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if identity.cmd is not None and not argv_is(identity.cmd, proc.cmdline()):
            return None
    except (psutil.Error, OSError):
        return None
    return proc


def is_frozen(proc: psutil.Process) -> bool:
    """Stopped by a signal (SIGSTOP, SIGTSTP) or traced: it cannot act on anything."""
    try:
        return proc.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return False


def is_alive(identity: ProcessIdentity | None) -> bool:
    return verified(identity) is not None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_keeper(proc: psutil.Process) -> bool:
    """A keeper, by its argv (see `is_keeper_argv`)."""
    try:
        return is_keeper_argv(proc.cmdline())
    except (psutil.Error, OSError):
        return False


def spared(variable: str, mine: str | None) -> Spare:
    """Which processes head another instance's tree, for cleanups on behalf of the instance
    whose launch marker (`variable`) is `mine`: any keeper (another instance's, or one of
    ours, which the cleanup must not take for a stray), and any process whose marker is set to
    something else (another instance's server or tools, even once orphaned)."""

    def spare(proc: psutil.Process) -> bool:
        if is_keeper(proc):
            return True
        try:
            theirs = proc.environ().get(variable)
        except (psutil.Error, OSError):
            return False
        return theirs is not None and theirs != mine

    return spare


def descendants(proc: psutil.Process, *, spare: Spare | None = None) -> list[psutil.Process]:
    """Live descendants of proc; with `spare`, without the processes it accepts and without
    their own descendants (another instance's tree)."""
    if spare is None:
        try:
            return [p for p in proc.children(recursive=True) if _alive(p)]
        except psutil.Error:
            return []
    found: list[psutil.Process] = []
    seen = {proc.pid}
    frontier = [proc]
    while frontier:
        parent = frontier.pop()
        try:
            children = parent.children()
        except psutil.Error:
            continue
        for child in children:
            if child.pid in seen or spare(child):
                continue
            seen.add(child.pid)
            frontier.append(child)
            if _alive(child):
                found.append(child)
    return found


def wait_gone(
    procs: Iterable[psutil.Process], timeout: float, clock: Callable[[], float] = time.monotonic
) -> list[psutil.Process]:
    """Poll until every process has exited (zombies count as exited); return the survivors."""
    pending = [p for p in procs if _alive(p)]
    deadline = clock() + timeout
    delay = 0.01
    while pending and clock() < deadline:
        time.sleep(delay)  # polling a condition with a deadline, not synchronising by sleep
        delay = min(delay * 1.5, 0.1)
        pending = [p for p in pending if _alive(p)]
    return pending


@dataclass
class Termination:
    """What ending a process tree took."""

    signalled: int = 0
    killed: int = 0  # needed SIGKILL
    survivors: int = 0
    killed_names: list[str] = field(default_factory=list)


def _signal(proc: psutil.Process, sig: int) -> bool:
    try:
        proc.send_signal(sig)  # psutil re-checks the PID's identity before signalling
        return True
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return False


def _signal_group(leader: psutil.Process, sig: int) -> None:
    """Signal the process group led by `leader` (already verified ours)."""
    try:
        if os.getpgid(leader.pid) == leader.pid and _alive(leader):
            os.killpg(leader.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_tree(
    root: psutil.Process,
    *,
    timeout: float = 10.0,
    extra: Iterable[psutil.Process] = (),
    spare: Spare = is_keeper,
) -> Termination:
    """SIGTERM root's group and all its descendants, wait, then SIGKILL whatever is left.

    `root` must already be verified (see :func:`verified`). Descendants are captured before any
    signal (the extras' too) so children that get re-parented when their parent dies are still
    found. What `spare` accepts (by default: another keeper, with the instance it supervises)
    is left alone with its descendants, wherever it hangs in the tree; `root` is always ended.
    """
    result = Termination()
    members = [root, *descendants(root, spare=spare)]
    for proc in extra:
        if not spare(proc):
            members += [proc, *descendants(proc, spare=spare)]
    tree = {p.pid: p for p in members if _alive(p)}
    if not tree:
        return result
    _signal_group(root, signal.SIGTERM)
    for proc in list(tree.values()):
        if _signal(proc, signal.SIGTERM):
            result.signalled += 1
        # Processes started meanwhile by a not-yet-dead parent are caught here.
        for child in descendants(proc, spare=spare):
            tree.setdefault(child.pid, child)
    survivors = wait_gone(tree.values(), timeout)
    if survivors:
        _signal_group(root, signal.SIGKILL)
        for proc in survivors:
            for child in descendants(proc, spare=spare):
                if child.pid not in tree:
                    tree[child.pid] = child
                    survivors.append(child)
            if _signal(proc, signal.SIGKILL):
                result.killed += 1
                result.killed_names.append(_describe(proc))
        survivors = wait_gone(survivors, 5.0)
    result.survivors = len(survivors)
    return result


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline()[:3]) or proc.name()}"
    except psutil.Error:
        return str(proc.pid)


def marked(variable: str, value: str) -> list[psutil.Process]:
    """Live processes of ours (same user) whose environment has variable=value."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(variable) == value and _alive(proc):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def set_child_subreaper() -> bool:
    """Make orphaned descendants re-parent to us (Linux), so a keeper can still end them."""
    import ctypes  # only the keeper needs it

    try:
        # The process's own symbols, libc's among them: `ctypes.util.find_library` would
        # run `ldconfig -p` in a subprocess first.
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
