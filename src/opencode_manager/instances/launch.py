"""How a server is launched: its argv, its environment, its private dirs (mostly pure)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import UsageError
from ..lines import Line
from ..models import DEFAULT_USERNAME, InstanceSpec
from ..text import strip_ansi

_LISTENING_RE = re.compile(r"listening on (https?://[^\s]+)")
#: Inherited variables that must never leak into a server: its credentials are ours to set.
#: OpenCode 2.x reads OPENCODE_PASSWORD first (then OPENCODE_SERVER_PASSWORD), and its own
#: client tells users to set it: one left in the caller's shell would replace ours.
_SCRUBBED = ("OPENCODE_SERVER_PASSWORD", "OPENCODE_SERVER_USERNAME", "OPENCODE_PASSWORD")
#: Every process of a server's tree inherits this marker (NAME:random token, per launch), so a
#: stop can find the ones that escaped the tree: proof that they are ours, without names.
MARK_VARIABLE = "OCM_INSTANCE_MARK"
#: An OpenCode plugin that deletes the server's credentials from its environment once the
#: server has read them, so the agent's tools, MCP and LSP servers never inherit them. One per
#: line: 1.x loads a file (and has a `shell.env` hook for terminals); 2.x loads a plugin given
#: by path only from a directory, in its own plugin format.
SCRUB_PLUGIN = Path(__file__).with_name("plugins") / "ocm-scrub-credentials.js"
SCRUB_PLUGIN_V2 = Path(__file__).with_name("plugins") / "ocm-scrub-credentials-v2"


def scrub_plugin(line: Line | None) -> Path:
    """The credential-scrubbing plugin a server of `line` loads (1.x when unknown)."""
    return SCRUB_PLUGIN_V2 if line is Line.V2 else SCRUB_PLUGIN


#: Would switch every plugin off, the one that keeps the password from the tools included.
_UNMANAGEABLE = ("OPENCODE_PURE",)


def mark_value(name: str, token: str) -> str:
    return f"{name}:{token}"


def server_argv(
    binary: str, spec: InstanceSpec, port: int | None, *, line: Line | None = None
) -> list[str]:
    """The command line. No secrets here: argv is world-readable in /proc."""
    argv = [binary, "serve", "--hostname", spec.hostname, "--port", str(port or 0)]
    for origin in spec.cors:
        argv += ["--cors", origin]
    if spec.log_level:
        # 1.x takes DEBUG/INFO/WARN/ERROR; 2.x refuses those and wants them in lower case.
        level = spec.log_level.lower() if line is Line.V2 else spec.log_level
        argv += ["--log-level", level]
    return argv


def xdg_dirs(instance_dir: Path) -> dict[str, Path]:
    """Private OpenCode data/state/cache so servers never share one SQLite database."""
    return {
        "XDG_DATA_HOME": instance_dir / "data",
        "XDG_STATE_HOME": instance_dir / "state",
        "XDG_CACHE_HOME": instance_dir / "cache",
    }


def server_env(
    base: Mapping[str, str],
    spec: InstanceSpec,
    *,
    password: str | None,
    instance_dir: Path,
    mark: str | None = None,
    line: Line | None = None,
) -> dict[str, str]:
    """The server's environment: the user's, our isolation and credentials, then --env.
    `line`: the server's OpenCode line, which decides the scrubbing plugin's form."""
    env = {
        k: v
        for k, v in base.items()
        if k not in _SCRUBBED and k not in _UNMANAGEABLE and not k.startswith("OCM_")
    }
    if mark:
        env[MARK_VARIABLE] = mark
    if not spec.shared_data:
        env.update({k: str(v) for k, v in xdg_dirs(instance_dir).items()})
    # A managed server must not replace its own binary behind the manager's back.
    env.setdefault("OPENCODE_DISABLE_AUTOUPDATE", "1")
    env.update(dict(spec.env))
    if password:
        env["OPENCODE_SERVER_PASSWORD"] = password
        env["OPENCODE_SERVER_USERNAME"] = DEFAULT_USERNAME
        env["OPENCODE_CONFIG_CONTENT"] = with_plugin(
            env.get("OPENCODE_CONFIG_CONTENT"), scrub_plugin(line)
        )
    return env


def with_plugin(config_content: str | None, plugin: Path) -> str:
    """OPENCODE_CONFIG_CONTENT with `plugin` added to its plugin list (the user's config is
    kept: OpenCode merges this layer over the others)."""
    try:
        config = json.loads(config_content) if config_content else {}
    except ValueError as exc:
        raise UsageError(f"OPENCODE_CONFIG_CONTENT is not JSON ({exc.args[0]})") from None
    if not isinstance(config, dict):
        raise UsageError("OPENCODE_CONFIG_CONTENT must be a JSON object")
    plugins = list(config.get("plugin") or [])
    uri = plugin.resolve().as_uri()
    if uri not in plugins:
        plugins.append(uri)
    config["plugin"] = plugins
    return json.dumps(config)


def prepare_dirs(instance_dir: Path, user_data_home: Path, spec: InstanceSpec) -> None:
    """Create the private XDG dirs and make the user's provider credentials visible."""
    instance_dir.mkdir(parents=True, exist_ok=True)
    if spec.shared_data:
        return
    for path in xdg_dirs(instance_dir).values():
        path.mkdir(parents=True, exist_ok=True)
    user_auth = user_data_home / "opencode" / "auth.json"
    link = instance_dir / "data" / "opencode" / "auth.json"
    if user_auth.is_file() and not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        # A link, not a copy: a later `opencode auth login` reaches every instance.
        os.symlink(user_auth, link)


def parse_listening(line: str) -> str | None:
    """The URL from the listening line: `opencode server listening on URL` (1.x) or
    `server listening on URL` (2.x)."""
    match = _LISTENING_RE.search(line)
    return match.group(1).rstrip("/") if match else None


def port_of(url: str) -> int | None:
    match = re.search(r":(\d+)(?:/|$)", url)
    return int(match.group(1)) if match else None


def explain_exit(lines: list[str], spec: InstanceSpec, port: int | None) -> str:
    """A one-line cause for a server that exited during start, from its output (its colour
    codes out: OpenCode 1.x prints `Error:` in red)."""
    lines = [strip_ansi(line) for line in lines]
    text = "\n".join(lines)
    if "ServeError" in text or "EADDRINUSE" in text or "address already in use" in text.lower():
        if port:
            return f"port {port} is already in use"
        return "the server could not bind its port"
    for line in lines:
        if "not valid JSON" in line or "Config file" in line:
            return "invalid OpenCode config: " + line.strip().removeprefix("Error: ")
    queries = [ln.strip() for ln in lines if ln.strip().startswith("Failed query:")]
    if queries:  # its database refused a statement (a full disk, say): name the statement
        return f"OpenCode's database failed at start ({queries[-1]})"
    errors = [ln.strip() for ln in lines if ln.strip().startswith("Error")]
    if errors:
        return errors[-1]
    meaningful = [ln.strip() for ln in lines if ln.strip() and "Warning:" not in ln]
    return meaningful[-1] if meaningful else "the server exited during start"
