"""docs/mcp.md, generated from the server itself: `python -m opencode_manager.mcpserver.reference
> docs/mcp.md` (a test checks it is current)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from .tools import MAX_WAIT_S, build_server

HEADER = f"""# `ocm mcp`: the tools

Generated from the server (`python -m opencode_manager.mcpserver.reference > docs/mcp.md`).
`ocm mcp` serves these on stdio, or with `--http` as streamable HTTP at
`http://127.0.0.1:8765/mcp` (loopback only) to clients that send `Authorization: Bearer` and the
token kept in `$OCM_HOME/mcp-token`. `--read-only` keeps the read tools, `--no-destructive` drops
the destructive ones, which also want `confirm: true`. `--log-level` (default `warning`) sets
what the SDK and the HTTP clients log on stderr: at the default, nothing in normal use.

In OpenCode, a project's `opencode.json`:

```json
{{"mcp": {{"ocm": {{"type": "local", "command": ["ocm", "mcp"],
                 "timeout": 120000}}}}}}
```

The `timeout` (ms) matters: `task_run` and `task_wait` wait up to {MAX_WAIT_S:.0f} s before they
return the task id, and `instances_start` until each server is healthy, while OpenCode gives an
MCP request 5 s unless told otherwise.

Arguments are strict: a tool refuses an argument it does not take, naming the ones it takes
(every `inputSchema` says `additionalProperties: false`), and a bad one comes back as one line,
`tool: what is wrong`, as does every error; errors name the tool to call next, never a CLI
command an agent cannot run. Every result is a JSON object (MCP `structuredContent`, and the
same object as compact JSON text) whose keys each tool's `outputSchema` declares, as its Result
below shows; records used in several results are described once, under [Types](#types).
Records are compact: each fact once, and a key whose value is null or empty is left out (a key
marked optional below). Results are open objects: a key not listed may appear too.
"""


def _kind(tool: Any) -> str:
    hints = tool.annotations
    if hints is not None and hints.read_only_hint:
        return "read"
    if hints is not None and hints.destructive_hint:
        return "destructive (needs `confirm: true`)"
    return "creates"


def _name(title: str) -> str:
    """A result type's name in the docs: `TaskRecord` -> `task record`."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", title).lower()


def _link(title: str) -> str:
    name = _name(title)
    return f"[{name}](#{name.replace(' ', '-')})"


def _type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "$ref" in schema:
        return _link(str(schema["$ref"]).rsplit("/", 1)[-1])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    values = schema.get("additionalProperties")
    if kind == "object" and isinstance(values, dict):
        return f"object of {_type(values)}"
    return kind


def _limits(schema: dict[str, Any]) -> str:
    parts = []
    for key, label in (("minimum", ">="), ("maximum", "<="), ("minLength", "length >="),
                       ("maxLength", "length <=")):  # fmt: skip
        if key in schema:
            parts.append(f"{label} {schema[key]}")
    for option in schema.get("anyOf", []):
        parts.extend(_limits(option).split(", ") if _limits(option) else [])
    return ", ".join(parts)


async def _listing() -> tuple[list[Any], list[Any], list[Any]]:
    server = build_server()
    return (
        await server.list_tools(),
        await server.list_resources(),
        await server.list_resource_templates(),
    )


def _text(text: str | None) -> str:
    return " ".join((text or "").split())


def _parameters(tool: Any) -> list[str]:
    props = tool.input_schema.get("properties", {})
    if not props:
        return ["No parameters.\n"]
    required = set(tool.input_schema.get("required", []))
    lines = ["| parameter | type | default | limits | description |", "|---|---|---|---|---|"]
    for name, schema in props.items():
        default = "required" if name in required else repr(schema.get("default"))
        lines.append(
            f"| `{name}` | {_type(schema)} | {default} | {_limits(schema) or '-'} | "
            f"{schema.get('description', '')} |"
        )
    return [*lines, ""]


def _keys(schema: dict[str, Any]) -> list[str]:
    """A result object's keys as a table (a key that may be absent says so)."""
    required = set(schema.get("required", []))
    lines = ["| key | type | description |", "|---|---|---|"]
    for key, prop in schema.get("properties", {}).items():
        optional = "" if key in required else " (optional)"
        lines.append(f"| `{key}`{optional} | {_type(prop)} | {_text(prop.get('description'))} |")
    return [*lines, ""]


def _shared(tools: list[Any]) -> dict[str, dict[str, Any]]:
    """Result types described once, under Types: the nested ones, and those several tools
    return (by title)."""
    found: dict[str, dict[str, Any]] = {}
    roots: dict[str, list[dict[str, Any]]] = {}
    for tool in tools:
        schema = tool.output_schema or {}
        found.update(schema.get("$defs", {}))
        roots.setdefault(schema.get("title", tool.name), []).append(schema)
    for title, schemas in roots.items():
        if len(schemas) > 1 or title in found:
            found[title] = schemas[0]
    return found


def _result(tool: Any, shared: dict[str, dict[str, Any]]) -> list[str]:
    schema = tool.output_schema or {}
    title = schema.get("title", "")
    if title in shared:
        article = "an" if _name(title)[0] in "aeiou" else "a"
        return [f"Result: {article} {_link(title)}.\n"]
    return [f"Result: {_text(schema.get('description'))}\n", *_keys(schema)]


def render() -> str:
    tools, resources, templates = asyncio.run(_listing())
    shared = _shared(tools)
    lines = [HEADER, "## Resources\n", "| URI | title | what |", "|---|---|---|"]
    for item in [*resources, *templates]:
        uri = getattr(item, "uri_template", None) or str(item.uri)
        lines.append(f"| `{uri}` | {item.title} | {_text(item.description)} |")
    lines.append("")
    for tool in sorted(tools, key=lambda t: (_kind(t) != "read", t.name)):
        lines.append(f"## `{tool.name}`: {tool.title}\n")
        lines.append(_text(tool.description) + "\n")
        lines.append(f"Kind: {_kind(tool)}.\n")
        lines.extend(_parameters(tool))
        lines.extend(_result(tool, shared))
    lines.append("## Types\n")
    lines.append("Records that several results share, each described once.\n")
    for title in sorted(shared, key=_name):
        lines.append(f"### {_name(title)}\n")
        lines.append(_text(shared[title].get("description")) + "\n")
        lines.extend(_keys(shared[title]))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
