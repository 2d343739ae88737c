"""The tools one chat-completions request offers, and how each OpenCode line names them (pure).

The two OpenCode lines offer the same abilities under different names, and the scripted model
reads which line it is talking to from the request itself rather than from any setting:

* the shell tool is ``bash`` on 1.x and ``shell`` on 2.x;
* file tools take ``filePath`` on 1.x and ``path`` on 2.x;
* ``todowrite`` is always offered on 1.x and on 2.x only with ``experimental.todo`` (its
  items then have no ``priority``);
* 1.x offers each MCP tool as a function ``<server>_<tool>``; 2.x offers none of them
  directly: they are reachable only from JavaScript run by its Code Mode tool ``execute``
  (``tools.<server>.<tool>(input)``), and its system prompt lists the servers it knows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SHELL_TOOLS = ("bash", "shell")  # 1.x, 2.x
TODO_TOOL = "todowrite"
STRUCTURED_TOOL = "StructuredOutput"
CODE_MODE_TOOL = "execute"
# An argument a line names differently: what the other line calls it.
_KEY_ALIASES = {"filePath": "path", "path": "filePath"}
# A tool a line names differently (CALL bash on 2.x runs its shell).
_TOOL_ALIASES = {"bash": "shell", "shell": "bash"}
# 2.x's Code Mode catalog, in the system prompt: "- <server> (<n> tools, <m> shown)".
_CATALOG_RE = re.compile(r"^-[ \t]+(\S+)[ \t]+\(\d+ tools?\b", re.MULTILINE)


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def conform(value: Any, schema: Mapping[str, Any] | None, position: int = 1) -> Any:
    """Fit ``value`` to a JSON schema: drop undeclared object keys, fill a required ``id``."""
    if schema is None:
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return value
        result = {k: conform(v, props[k]) for k, v in value.items() if k in props}
        required = schema.get("required")
        # Some OpenCode versions require an id per todo; a position-based one is deterministic.
        if isinstance(required, list) and "id" in required and "id" not in result:
            result["id"] = str(position)
        return result
    if isinstance(value, list):
        items = schema.get("items")
        item_schema = items if isinstance(items, Mapping) else None
        return [conform(v, item_schema, index) for index, v in enumerate(value, start=1)]
    return value


def rename_keys(args: Mapping[str, Any], schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """``args`` with each key the schema does not declare renamed to its other line's name,
    when the schema declares that one (``filePath`` <-> ``path``)."""
    props = schema.get("properties") if schema is not None else None
    if not isinstance(props, Mapping):
        return dict(args)
    renamed: dict[str, Any] = {}
    for key, value in args.items():
        alias = _KEY_ALIASES.get(key)
        if key not in props and alias is not None and alias in props and alias not in args:
            key = alias
        renamed[key] = value
    return renamed


@dataclass(frozen=True)
class Toolbox:
    """What one request offers: tool names with their parameter schemas, and the MCP
    servers 2.x lists for its Code Mode."""

    schemas: Mapping[str, Mapping[str, Any] | None]
    code_mode_servers: tuple[str, ...] = ()

    @classmethod
    def of(cls, request: Mapping[str, Any]) -> Toolbox:
        """The toolbox of a parsed ``/v1/chat/completions`` request body."""
        schemas: dict[str, Mapping[str, Any] | None] = {}
        tools = request.get("tools")
        for tool in tools if isinstance(tools, list) else []:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                params = function.get("parameters")
                schemas[function["name"]] = params if isinstance(params, Mapping) else None
        servers: list[str] = []
        messages = request.get("messages")
        for message in messages if isinstance(messages, list) else []:
            if isinstance(message, Mapping) and message.get("role") == "system":
                text = _text(message.get("content"))
                section = text.split("## Available tools", 1)
                if len(section) == 2:
                    servers += [s for s in _CATALOG_RE.findall(section[1]) if s not in servers]
        return cls(schemas, tuple(servers))

    @property
    def names(self) -> frozenset[str]:
        """The names of the tools offered."""
        return frozenset(self.schemas)

    def offers(self, name: str) -> bool:
        """Whether a tool of that name is offered."""
        return name in self.schemas

    def schema(self, name: str) -> Mapping[str, Any] | None:
        """The JSON schema of the parameters of tool ``name``, if offered with one."""
        return self.schemas.get(name)

    @property
    def shell(self) -> str:
        """The shell tool's name: ``bash`` (1.x) or ``shell`` (2.x); ``bash`` if neither."""
        return next((n for n in SHELL_TOOLS if self.offers(n)), SHELL_TOOLS[0])

    def resolve(self, name: str, args: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The call to make for "call tool ``name`` with ``args``" on this request's line.

        A tool offered under that name is called as it is; a tool the other line names
        differently is called by this line's name; an MCP tool ``<server>_<tool>`` that 2.x
        keeps behind Code Mode becomes an ``execute`` call running it. Anything else is
        called as asked, so OpenCode itself says that no such tool exists.
        """
        if self.offers(name) or not self.schemas:
            return name, dict(args)
        alias = _TOOL_ALIASES.get(name)
        if alias is not None and self.offers(alias):
            return alias, dict(args)
        if self.offers(CODE_MODE_TOOL):
            # The longest server name wins: a server "a_b" owns "a_b_tool", not "a".
            for server in sorted(self.code_mode_servers, key=len, reverse=True):
                if name.startswith(server + "_") and len(name) > len(server) + 1:
                    tool = name[len(server) + 1 :]
                    return CODE_MODE_TOOL, {"code": code_mode_call(server, tool, args)}
        return name, dict(args)


def code_mode_call(server: str, tool: str, args: Mapping[str, Any]) -> str:
    """JavaScript for 2.x's ``execute`` tool that calls one MCP tool and returns its result
    (JSON is valid JavaScript, so the names and arguments are written as JSON)."""
    return f"return await tools[{json.dumps(server)}][{json.dumps(tool)}]({json.dumps(args)})"
