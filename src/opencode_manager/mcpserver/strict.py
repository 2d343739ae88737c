"""The SDK's `Tool`, made strict and terse for agents.

Out of the box a tool built from a function ignores an argument it does not take (a typo
silently runs with the default), reports bad arguments as pydantic's multi-line text, says
`Error executing tool X:` before every error, keeps the docstring's source indentation in
its description, and sends its result twice, as `structuredContent` and as indented JSON
text. `StrictTool` changes exactly that:

* its arguments model forbids extra keys, so the advertised `inputSchema` says
  `additionalProperties: false` and an unknown argument is refused, naming the ones the tool
  takes (`arguments.refusal`);
* every error is one line, `tool: what is wrong`, with the library's CLI advice said as tool
  advice (`advice.for_agent`);
* its description is the docstring as plain paragraphs;
* the text copy of a structured result is compact JSON (a client that reads only `content`,
  as OpenCode does, gets the same object in fewer bytes).

The server passes the tools it builds to `MCPServer(tools=...)`; nothing else of the SDK
changes.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, cast

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import ConfigDict, ValidationError

from .advice import for_agent
from .arguments import refusal


def clean_description(doc: str | None) -> str:
    """A docstring as text: no source indentation, each paragraph on one line."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def _forbidding(model: type[ArgModelBase]) -> type[ArgModelBase]:
    """The same arguments model, refusing keys it does not declare."""
    config = ConfigDict(**{**model.model_config, "extra": "forbid"})
    namespace = {"model_config": config, "__module__": model.__module__}
    return type(model.__name__, (model,), namespace)


class StrictTool(Tool):
    """A tool that refuses unknown arguments and says every error in one line."""

    @classmethod
    def of(cls, fn: Callable[..., Any], *, title: str, annotations: ToolAnnotations) -> StrictTool:
        made = cls.from_function(
            fn, title=title, description=clean_description(fn.__doc__), annotations=annotations
        )
        tool = cast("StrictTool", made)  # `from_function` builds a `cls`
        model = _forbidding(tool.fn_metadata.arg_model)
        tool.fn_metadata.arg_model = model
        tool.parameters = model.model_json_schema(by_alias=True)
        return tool

    @property
    def known(self) -> list[str]:
        """The arguments it takes, in the schema's order."""
        return list(self.parameters.get("properties", {}))

    async def run(
        self, arguments: dict[str, Any], context: Any, convert_result: bool = False
    ) -> Any:
        try:
            result = await super().run(arguments, context, convert_result)
        except UnexpectedToolError as exc:
            # A bug here: the SDK logs the cause's traceback; the agent gets one line.
            raise UnexpectedToolError(
                f"{self.name}: an unexpected error (the ocm mcp server logged it)"
            ) from exc.__cause__
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                errors = [dict(e) for e in cause.errors()]
                raise ToolError(f"{self.name}: {refusal(self.name, errors, self.known)}") from cause
            said = (
                str(cause)
                if cause
                else str(exc).removeprefix(f"Error executing tool {self.name}: ")
            )
            raise ToolError(f"{self.name}: {for_agent(said)}") from cause
        if isinstance(result, CallToolResult) and result.structured_content is not None:
            text = json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False)
            result.content = [TextContent(type="text", text=text)]
        return result
