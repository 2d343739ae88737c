"""docs/mcp.md is the MCP server's own tool list: regenerate it when a tool changes."""

from __future__ import annotations

from pathlib import Path

from opencode_manager.mcpserver.reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "mcp.md"


def test_mcp_reference_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/mcp.md is stale: python -m opencode_manager.mcpserver.reference > docs/mcp.md"
    )
