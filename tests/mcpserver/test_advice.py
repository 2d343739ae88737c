"""The library's CLI advice said as MCP tool advice (`mcpserver/advice.py`): on the messages
the tools meet, and on every message the library raises with CLI advice in it."""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

import pytest

from opencode_manager.mcpserver.advice import TOOLS, for_agent
from opencode_manager.mcpserver.tools import build_server

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "opencode_manager"


@pytest.mark.parametrize(
    ("message", "said"),
    [
        ("no instance named 'x'; see `ocm ls`", "no instance named 'x'; call instances_list"),
        ("no task 't-1'; see `ocm results`", "no task 't-1'; call tasks_list"),
        ("no batch 'b-1'; see `ocm batch ls`", "no batch 'b-1'; call batches_list"),
        ("no session ses_1 on oc-1; see `ocm sessions`",
         "no session ses_1 on oc-1; call sessions_list"),
        ("no running instance to send the task to; start one with `ocm start`",
         "no running instance to send the task to; start one with instances_start"),
        ("oc-1 exited; see `ocm logs oc-1`", 'oc-1 exited; call instance_logs {"name": "oc-1"}'),
        ("batch b-1 is running: `ocm batch cancel b-1` first",
         'batch b-1 is running: batch_cancel {"batch_id": "b-1", "confirm": true} first'),
        ("stale: `ocm restart oc-2`", 'stale: instance_restart {"name": "oc-2", "confirm": true}'),
        ("no opencode binary: run `ocm install`",
         "no opencode binary: run `ocm install` (run in a shell)"),
        ("3 cancelled; `ocm batch resume b-1 --requeue-cancelled` runs them",
         "3 cancelled; `ocm batch resume b-1 --requeue-cancelled` (run in a shell) runs them"),
        ("--dir /nope: no such directory", "`directory` /nope: no such directory"),
        ("invalid --status 'x': choose from pending, running",
         "invalid `status` 'x': choose from pending, running"),
        ("no instance named 'x'; see `ocm ls` (exit code 3 in the CLI)",
         "no instance named 'x'; call instances_list"),
        ("git is not installed; --worktree needs it", "git is not installed; --worktree needs it"),
        ("exit code 1", "exit code 1"),  # a process's, not the CLI's
    ],
)  # fmt: skip
def test_the_messages_the_tools_meet(message: str, said: str) -> None:
    assert for_agent(message) == said


def _raised_messages() -> list[str]:
    """Every message the library (not its fronts) raises, placeholders as `{...}`."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name in ("cli", "mcpserver"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            for arg in node.exc.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append(arg.value)
                elif isinstance(arg, ast.JoinedStr):
                    found.append("".join(
                        str(part.value) if isinstance(part, ast.Constant) else "{x}"
                        for part in arg.values
                    ))  # fmt: skip
    return found


def test_no_library_message_keeps_cli_advice_an_agent_cannot_follow() -> None:
    """Each `ocm COMMAND` the library raises becomes the tool that does it, or is marked as
    a command to run in a shell."""
    messages = [m for m in _raised_messages() if "`ocm " in m]
    assert len(messages) >= 10, "the scan found the library's advice"
    for message in messages:
        said = for_agent(message)
        for command in re.findall(r"`ocm [^`]*`(?! \(run in a shell\))", said):
            pytest.fail(f"{message!r} -> {said!r} keeps {command}")


def test_every_mapped_command_names_a_tool_of_the_server() -> None:
    names = {tool.name for tool in asyncio.run(build_server().list_tools())}
    assert {tool for tool, _, _ in TOOLS.values()} <= names
