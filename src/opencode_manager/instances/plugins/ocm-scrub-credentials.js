// opencode-manager: keep the server's HTTP Basic credentials out of the processes
// OpenCode spawns (bash tool, "!" shell commands, local MCP servers, LSP servers,
// formatters, PTY terminals).
//
// Safe because OpenCode has already captured the credentials before any plugin is
// loaded (the HTTP auth middleware keeps its own copy), so HTTP auth keeps working.
const KEYS = ["OPENCODE_SERVER_PASSWORD", "OPENCODE_SERVER_USERNAME"]

function scrub() {
  for (const key of KEYS) delete process.env[key]
}

// Runs when OpenCode imports this module, i.e. while it bootstraps the first
// instance (project directory), before that instance spawns MCP/LSP/shell children.
scrub()

// OpenCode calls every exported function as a plugin factory: export only this one.
export const OcmScrubServerCredentials = async () => {
  scrub()
  return {
    // Triggered right before the bash tool / "!" shell / PTY spawn. Children built as
    // {...process.env, ...output.env} are clean once process.env is scrubbed. PTY
    // terminals (trigger without sessionID) also inherit the environment the server
    // was started with, which deleting from process.env does not change, so overwrite
    // the keys there with empty strings.
    "shell.env": async (input, output) => {
      scrub()
      if (!input?.sessionID) for (const key of KEYS) output.env[key] = ""
    },
  }
}
