"""docs/mcp.md, generated from the server itself: `python -m opencode_manager.mcpserver.reference
> docs/mcp.md` (a test checks it is current)."""

from __future__ import annotations

import asyncio
from typing import Any

from .tools import MAX_WAIT_S, build_server

HEADER = f"""# `ocm mcp`: the tools

Generated from the server (`python -m opencode_manager.mcpserver.reference > docs/mcp.md`).
`ocm mcp` serves these on stdio, or with `--http` as streamable HTTP at
`http://127.0.0.1:8765/mcp` (loopback only) to clients that send `Authorization: Bearer` and the
token kept in `$OCM_HOME/mcp-token`. `--read-only` keeps the read tools, `--no-destructive` drops
the destructive ones, which also want `confirm: true`. `task_run` and `task_wait` wait at most
{MAX_WAIT_S:.0f} s, then return the task id. Every result is a JSON object (MCP
`structuredContent`); an error a model could fix comes back as a tool error with one readable
line.
"""


def _kind(tool: Any) -> str:
    hints = tool.annotations
    if hints is not None and hints.read_only_hint:
        return "read"
    if hints is not None and hints.destructive_hint:
        return "destructive (needs `confirm: true`)"
    return "creates"


def _type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
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


def render() -> str:
    tools, resources, templates = asyncio.run(_listing())
    lines = [HEADER, "## Resources\n", "| URI | title | what |", "|---|---|---|"]
    for item in [*resources, *templates]:
        uri = getattr(item, "uri_template", None) or str(item.uri)
        lines.append(f"| `{uri}` | {item.title} | {' '.join((item.description or '').split())} |")
    lines.append("")
    for tool in sorted(tools, key=lambda t: (_kind(t) != "read", t.name)):
        lines.append(f"## `{tool.name}`: {tool.title}\n")
        lines.append(" ".join((tool.description or "").split()) + "\n")
        lines.append(f"Kind: {_kind(tool)}.\n")
        props = tool.input_schema.get("properties", {})
        required = set(tool.input_schema.get("required", []))
        if props:
            lines.append("| parameter | type | default | limits | description |")
            lines.append("|---|---|---|---|---|")
            for name, schema in props.items():
                default = "required" if name in required else repr(schema.get("default"))
                lines.append(
                    f"| `{name}` | {_type(schema)} | {default} | {_limits(schema) or '-'} | "
                    f"{schema.get('description', '')} |"
                )
            lines.append("")
        else:
            lines.append("No parameters.\n")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
