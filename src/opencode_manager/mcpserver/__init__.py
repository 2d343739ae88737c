"""The MCP front (`ocm mcp`): the fleet as tools for AI agents. Needs the `[mcp]` extra."""
