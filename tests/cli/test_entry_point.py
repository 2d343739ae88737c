"""The real entry point, in a process of its own: what the in-process `ocm` fixture cannot
show. Every documented exit code is pinned here end to end (one line on stderr, the code, no
traceback), with the console script, stdin, a closed pipe, click's completion exit, and the
in-process runner checked against a real process for the same commands.

Everything else about the CLI runs in-process (tests/cli/test_errors.py and the rest).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opencode_manager.models import InstanceSpec, State
from opencode_manager.registry import Registry

from helpers import Ocm, Result, assert_one_line_error, forge_row, run_ocm


def _home() -> Path:
    return Path(os.environ["OCM_HOME"])


def _stopped_record(name: str = "idle") -> None:
    registry = Registry(_home() / "registry.db")
    with registry.transaction() as db:
        registry.reserve(db, InstanceSpec(name=name, dir="/"), port=None)
    forge_row(registry, name, state=State.STOPPED)
    registry.close()


def _corrupt_registry() -> None:
    _home().mkdir(parents=True, exist_ok=True)
    (_home() / "registry.db").write_bytes(b"\x00garbage, not sqlite\n" * 512)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def _fake_opencode(tmp: Path, version: str) -> str:
    fake = tmp / "bin" / "opencode"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f"#!/bin/sh\necho {version}\n")
    fake.chmod(0o755)
    return str(fake)


# (args, env, stdin, code, needle); "{port}" is a port someone else holds, "{tmp}" the test's
# temporary directory.
CASES: list[tuple[list[str], dict[str, str], str | None, int, str]] = [
    (["frobnicate"], {}, None, 2, "No such command"),
    (["start", "--port", "abc"], {}, None, 2, "invalid port 'abc'"),
    (["start", "--env", "FOO"], {}, None, 2, "expected KEY=VALUE"),
    (["run", "--async", "--format", "json", "hi"], {}, None, 2, "choose one"),
    (
        ["batch", "-"],
        {},
        '{"prompt": "a"}\n{"prompt": "b", "x": 2}\n',
        2,
        "<stdin>:2: unknown field",
    ),
    (["status", "nope"], {}, None, 3, "no instance named 'nope'"),
    (["run", "hi"], {}, None, 3, "no running instance to send the task to"),
    (["results", "--batch", "b-nope"], {}, None, 3, "no batch 'b-nope'"),
    (["stop", "idle"], {}, None, 4, "idle is not running (stopped)"),
    (["model-server", "--port", "{port}"], {}, None, 4, "port {port} is in use on 127.0.0.1"),
    (["start"], {"OCM_OPENCODE": "/no/such/opencode"}, None, 5, "does not exist"),
    (["start"], {"OCM_OPENCODE": "{tmp}/bin/opencode"}, None, 5, "too old"),
    (["ls"], {"OCM_HOME": "{tmp}/a-file/state"}, None, 7, "is not writable"),
    (["ls"], {}, None, 7, "is corrupt"),
]
PREPARE: dict[str, Callable[[], None]] = {"idle": _stopped_record, "is corrupt": _corrupt_registry}


@pytest.mark.parametrize(
    ("args", "env", "stdin", "code", "needle"), CASES, ids=[f"{c[3]}-{c[0][0]}" for c in CASES]
)
def test_one_line_and_the_exit_code_in_a_process_of_its_own(
    tmp_path: Path,
    busy_port: int,
    args: list[str],
    env: dict[str, str],
    stdin: str | None,
    code: int,
    needle: str,
) -> None:
    for key, prepare in PREPARE.items():
        if key in needle:
            prepare()
    _fake_opencode(tmp_path, "1.1.38")
    (tmp_path / "a-file").write_text("")

    def fill(text: str) -> str:
        return text.format(port=busy_port, tmp=tmp_path)

    result = run_ocm(
        *map(fill, args), env={k: fill(v) for k, v in env.items()}, input=stdin, timeout=60
    )
    assert_one_line_error(result, code, fill(needle))


def test_the_console_script_exits_with_mains_code() -> None:
    script = Path(sys.executable).with_name("ocm")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.split()[:2]) == (0, ["ocm,", "version"]), done
    done = subprocess.run([script, "status", "nope"], capture_output=True, text=True, timeout=60)
    assert_one_line_error(Result(["status", "nope"], done.returncode, done.stdout, done.stderr),
                          3, "no instance named 'nope'")  # fmt: skip


def test_no_arguments_print_the_help_and_exit_0() -> None:
    result = run_ocm()
    assert result.returncode == 0, str(result)
    assert result.stdout.startswith("Usage: ocm "), result.stdout
    assert result.stderr == ""


def test_completion_exits_through_click_with_0() -> None:
    env = {"_OCM_COMPLETE": "bash_complete", "COMP_WORDS": "ocm sta", "COMP_CWORD": "1"}
    result = run_ocm(env=env)
    assert result.returncode == 0, str(result)
    assert "plain,start" in result.stdout.splitlines(), result.stdout


@pytest.mark.parametrize("args", [["--help"], ["results", "--json"]])
def test_a_closed_pipe_is_no_traceback(args: list[str]) -> None:
    """`ocm ... | head -0`: the reader is gone before ocm writes; nothing on stderr."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "opencode_manager", *args],
            stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert done.stderr == "", done.stderr
    assert done.returncode in (0, 1), done  # click ends a broken pipe with 1 before main sees it


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["start", "--help"],
        ["ls", "--no-foreign"],  # foreign servers are anybody's on this machine: they change
        ["ls", "--json", "--no-foreign"],
        ["status", "1"],
        ["batch", "ls"],
        ["results", "prune"],
        ["stop", "--all", "x"],
    ],
)
def test_in_process_and_a_process_of_its_own_agree(ocm: Ocm, args: list[str]) -> None:
    """The in-process runner is only worth trusting while it gives what the real entry point
    gives: the same code, stdout and stderr, byte for byte."""
    assert str(ocm(*args)) == str(run_ocm(*args, env={"COLUMNS": "80", "LINES": "24"}))


def test_the_in_process_runner_puts_back_what_a_process_would_take_with_it(
    ocm: Ocm, busy_port: int, tmp_path: Path
) -> None:
    """`model-server` takes SIGINT and SIGTERM for itself before it binds; the environment,
    the working directory and the signal handlers are pytest's again after the call."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    environ, cwd = dict(os.environ), os.getcwd()
    result = ocm(
        "model-server", "--port", str(busy_port), env={"OCM_EXTRA": "1"}, cwd=str(tmp_path)
    )
    assert_one_line_error(result, 4, "is in use")
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert (dict(os.environ), os.getcwd()) == (environ, cwd)
