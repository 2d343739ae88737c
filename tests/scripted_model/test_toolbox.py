"""Unit tests of the toolbox: what a request offers, and names translated between lines."""

from __future__ import annotations

from typing import Any

from opencode_manager.scripted_model import plan_response
from opencode_manager.scripted_model.toolbox import Toolbox, code_mode_call, rename_keys


def tool(name: str, *keys: str) -> dict[str, Any]:
    properties = {key: {"type": "string"} for key in keys}
    return {
        "type": "function",
        "function": {"name": name, "parameters": {"properties": properties}},
    }


def body(*tools: dict[str, Any], system: object = "You are opencode.") -> dict[str, Any]:
    return {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "x"}],
        "tools": list(tools),
    }


CATALOG = """# Code Mode
Use the `execute` tool to call the tools listed below.
- search({
  query?: string,
}): {}

## Available tools

- git_hub (3 tools, 2 shown)
  - tools.git_hub.issue_get({ id: string }): Promise<{}>
- git (1 tool, 1 shown)
  - tools.git.status(): Promise<{}>
"""


def test_the_shell_tool_is_whichever_the_line_offers() -> None:
    assert Toolbox.of(body(tool("bash", "command"))).shell == "bash"
    assert Toolbox.of(body(tool("shell", "command"))).shell == "shell"
    assert Toolbox.of(body(tool("read"))).shell == "bash"  # neither: OpenCode will say so


def test_the_code_mode_servers_come_from_the_system_prompt_catalog() -> None:
    toolbox = Toolbox.of(body(tool("execute", "code"), system="You are opencode.\n" + CATALOG))
    assert toolbox.code_mode_servers == ("git_hub", "git")
    # A catalog-looking line outside the "Available tools" section is not a server.
    assert Toolbox.of(body(system="- nope (2 tools, 1 shown)")).code_mode_servers == ()
    listed = [{"type": "text", "text": CATALOG}]
    assert Toolbox.of(body(system=listed)).code_mode_servers == ("git_hub", "git")


def test_resolve_prefers_the_longest_listed_server() -> None:
    toolbox = Toolbox.of(body(tool("execute", "code"), system=CATALOG))
    assert toolbox.resolve("git_hub_issue_get", {"id": "7"}) == (
        "execute",
        {"code": 'return await tools["git_hub"]["issue_get"]({"id": "7"})'},
    )
    assert toolbox.resolve("git_status", {}) == (
        "execute",
        {"code": 'return await tools["git"]["status"]({})'},
    )
    assert toolbox.resolve("git_", {}) == ("git_", {})  # a server with no tool name
    assert toolbox.resolve("other_tool", {}) == ("other_tool", {})


def test_resolve_keeps_offered_names_and_translates_the_other_lines() -> None:
    toolbox = Toolbox.of(body(tool("shell", "command"), tool("execute", "code"), system=CATALOG))
    assert toolbox.resolve("execute", {"code": "1"}) == ("execute", {"code": "1"})
    assert toolbox.resolve("bash", {"command": "ls"}) == ("shell", {"command": "ls"})
    assert Toolbox.of(body()).resolve("bash", {}) == ("bash", {})  # no tools at all


def test_rename_keys_only_to_a_declared_other_name() -> None:
    v2: dict[str, Any] = {"properties": {"path": {}, "content": {}}}
    assert rename_keys({"filePath": "a", "content": "b"}, v2) == {"path": "a", "content": "b"}
    v1: dict[str, Any] = {"properties": {"filePath": {}}}
    assert rename_keys({"path": "a"}, v1) == {"filePath": "a"}
    # Declared as given, both given, or no schema: left as they are.
    assert rename_keys({"path": "a"}, v2) == {"path": "a"}
    both = {"filePath": "a", "path": "b"}
    assert rename_keys(both, v1) == both
    assert rename_keys({"filePath": "a"}, None) == {"filePath": "a"}


def test_code_mode_call_quotes_names_and_arguments_as_json() -> None:
    code = code_mode_call('we"ird', "tool-name", {"text": "a\nb", "n": 1})
    assert code == 'return await tools["we\\"ird"]["tool-name"]({"text": "a\\nb", "n": 1})'


def test_noretry_adds_x_should_retry_false_to_the_error() -> None:
    plan = plan_response(
        {"messages": [{"role": "user", "content": "ERR500 NORETRY"}], "tools": [tool("bash")]}
    )
    assert plan.error is not None
    assert plan.error.headers() == {"retry-after-ms": "20", "x-should-retry": "false"}
    plain = plan_response(
        {"messages": [{"role": "user", "content": "ERR400 NORETRY"}], "tools": [tool("bash")]}
    )
    assert plain.error is not None
    assert plain.error.headers() == {"x-should-retry": "false"}
