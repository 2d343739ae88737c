"""The library's advice, said for an agent on MCP: the tool to call instead of the command.

The library's messages are written for the CLI ("no instance named 'x'; see `ocm ls`",
"--dir /x: no such directory") and stay so: the CLI prints them. An agent talking MCP cannot
run `ocm ls`, and has no `--dir`; it has `instances_list` and `directory`. So the MCP front
passes every message through `for_agent`, which rewrites each `ocm COMMAND ARGS` in
backticks as the tool that does it (with its arguments, as JSON), `see` as `call`, and the
CLI flags the tools share as their parameter names. A command no tool does stays, marked
as one to run in a shell. Pure: tests/mcpserver/test_advice.py runs the library's own
messages through it.
"""

from __future__ import annotations

import json
import re

#: CLI command -> (tool, the parameter its first argument fills, fixed arguments).
TOOLS: dict[str, tuple[str, str | None, dict[str, object]]] = {
    "ls": ("instances_list", None, {}),
    "top": ("fleet_status", None, {}),
    "status": ("instance_get", "name", {}),
    "logs": ("instance_logs", "name", {}),
    "events": ("events_list", "name", {}),
    "start": ("instances_start", "name", {}),
    "restart": ("instance_restart", "name", {"confirm": True}),
    "stop": ("instances_stop", "names", {"confirm": True}),
    "run": ("task_run", "prompt", {}),
    "wait": ("task_wait", "task_id", {}),
    "result": ("task_get", "task_id", {}),
    "results": ("tasks_list", None, {}),
    "sessions": ("sessions_list", "name", {}),
    "session": ("session_get", "session_id", {}),
    "batch": ("batch_run", None, {}),
    "batch ls": ("batches_list", None, {}),
    "batch show": ("batch_get", "batch_id", {}),
    "batch cancel": ("batch_cancel", "batch_id", {"confirm": True}),
    "metrics": ("metrics_get", None, {}),
}

#: CLI flags -> the parameter a tool takes for the same thing.
FLAGS = {
    "--dir": "directory",
    "--status": "status",
    "--timeout": "timeout",
    "--model": "model",
    "--agent": "agent",
    "--per-instance": "per_instance",
    "--name": "name",
}

_COMMAND = re.compile(r"(?P<see>\bsee )?`ocm (?P<words>[^`]+)`")
_FLAG = re.compile(r"(?<![\w-])(?P<flag>--[a-z][a-z-]*)\b")
_EXIT_CODE = re.compile(r" \(exit code \d+ in the CLI\)")


def _tool(words: str) -> str | None:
    """`restart oc-1` -> `instance_restart {"name": "oc-1", "confirm": true}`; None when no
    tool does it (or its arguments are flags a tool does not take)."""
    parts = words.split()
    for size in (2, 1):
        command = " ".join(parts[:size])
        if len(parts) >= size and command in TOOLS:
            tool, parameter, fixed = TOOLS[command]
            rest = parts[size:]
            if any(part.startswith("-") for part in rest):
                return None
            arguments: dict[str, object] = {}
            if rest and parameter is not None:
                arguments[parameter] = rest if parameter == "names" else " ".join(rest)
            elif rest:
                return None
            arguments.update(fixed)
            return f"{tool} {json.dumps(arguments)}" if arguments else tool
    return None


def _command(match: re.Match[str]) -> str:
    tool = _tool(match["words"])
    if tool is None:
        return f"{match[0]} (run in a shell)"
    return f"call {tool}" if match["see"] else tool


def _flag(match: re.Match[str]) -> str:
    parameter = FLAGS.get(match["flag"])
    return f"`{parameter}`" if parameter else match[0]


def for_agent(message: str) -> str:
    """A library message with its CLI advice turned into MCP tool advice (see the module)."""
    message = _EXIT_CODE.sub("", message)
    parts = re.split(r"(`[^`]*`)", message)
    # Flags outside backticks are the message's own words; inside they are a command's.
    out = [part if part.startswith("`") else _FLAG.sub(_flag, part) for part in parts]
    return _COMMAND.sub(_command, "".join(out))
