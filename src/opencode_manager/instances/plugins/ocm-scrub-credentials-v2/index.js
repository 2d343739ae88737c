// opencode-manager: keep the server's HTTP Basic credentials out of the processes
// OpenCode 2.x spawns (the shell tool, MCP servers, terminals). The 1.x plugin beside this
// one is a single file with a `shell.env` hook; OpenCode 2.x loads a plugin configured by
// path only from a directory (this package), wants a default export with an id, and has no
// `shell.env` hook: its children inherit process.env as it is when they are spawned.
//
// Safe because OpenCode 2.x reads its password (OPENCODE_PASSWORD, else
// OPENCODE_SERVER_PASSWORD) once at start-up, before any plugin is imported, and keeps its
// own copy for HTTP auth; deleting the variables here leaves auth working (checked on 2.1.2).
const KEYS = ["OPENCODE_SERVER_PASSWORD", "OPENCODE_SERVER_USERNAME", "OPENCODE_PASSWORD"]

function scrub() {
  for (const key of KEYS) delete process.env[key]
}

// Runs when OpenCode imports this module: while it boots the first location (project
// directory), before that location runs a tool.
scrub()

export default {
  id: "ocm-scrub-credentials",
  setup: async () => {
    scrub()
  },
}
