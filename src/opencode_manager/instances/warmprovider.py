"""ocm's warm-up model as an OpenCode provider, and where it may be added (mostly pure).

The keeper warms a fresh server with real turns (keeper/warmup.py) answered by a model it
serves itself on a loopback port (keeper/warmmodel.py). OpenCode reaches that model as the
provider `ocm-warmup`, which has to be in the config of the directory a turn runs in.

A provider OpenCode knows can become its default model, the one a task that names none
gets. When no config layer sets `model`, OpenCode 1.18.33 takes the first provider named in
the config's `provider` table (any provider when none is named), and 2.1.2 ranks every
enabled model. Measured with no `model` set: adding `ocm-warmup` made 1.x's default
`ocm-warmup/warmup`, and moved 2.x's from `opencode/big-pickle` to another free model. With
`model` set, both lines take it, whatever providers there are. So:

* the provider joins the server-wide layer ocm passes (`OPENCODE_CONFIG_CONTENT`, merged over
  the user's own layers, which stay as they were) only when a layer ocm can read sets
  `model` (`pinned_by`); then the text turn in the instance's directory can use it;
* the throw-away directory of the shell turn gets its own `opencode.json` naming it
  (`scratch_config`): a project config configures that directory alone.

`pinned_by` reads the layers both lines load (the server's `OPENCODE_CONFIG_CONTENT` and
`OPENCODE_CONFIG`, the global config dir, the project's `opencode.json[c]` and `.opencode/`
up to the repository root, `OPENCODE_CONFIG_DIR`). A layer it does not read (a remote or an
organisation's config, the TOML form) can only make it answer "not pinned", which costs the
text turn, never the user's default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UsageError

PROVIDER_ID = "ocm-warmup"
MODEL_ID = "warmup"
MODEL = f"{PROVIDER_ID}/{MODEL_ID}"
#: Not a secret: the endpoint answers only while its keeper is warming the server up.
API_KEY = "ocm-warmup"
CONFIG_VARIABLE = "OPENCODE_CONFIG_CONTENT"
_CONFIG_NAMES = ("opencode.jsonc", "opencode.json")


def provider_entry(base_url: str) -> dict[str, Any]:
    """The `provider` table entry for the warm-up model at `base_url` (`http://H:P/v1`)."""
    return {
        "npm": "@ai-sdk/openai-compatible",
        "name": "ocm warm-up",
        "options": {"baseURL": base_url, "apiKey": API_KEY},
        "models": {MODEL_ID: {"name": "ocm warm-up (answers only ocm's own warm-up)"}},
    }


def _config_object(content: str | None) -> dict[str, Any]:
    try:
        config = json.loads(content) if content else {}
    except ValueError as exc:
        raise UsageError(f"{CONFIG_VARIABLE} is not JSON ({exc.args[0]})") from None
    if not isinstance(config, dict):
        raise UsageError(f"{CONFIG_VARIABLE} must be a JSON object")
    return config


def with_provider(content: str | None, base_url: str) -> str:
    """`OPENCODE_CONFIG_CONTENT` with the warm-up provider added after the user's own
    providers; every other key (`model`, `small_model`, the user's providers) as it was."""
    config = _config_object(content)
    providers = config.get("provider")
    providers = dict(providers) if isinstance(providers, dict) else {}
    providers[PROVIDER_ID] = provider_entry(base_url)
    config["provider"] = providers
    return json.dumps(config)


def scratch_config(base_url: str) -> dict[str, Any]:
    """The throw-away directory's `opencode.json`: the warm-up model is its provider and
    its default, and its shell runs without asking."""
    return {
        "provider": {PROVIDER_ID: provider_entry(base_url)},
        "model": MODEL,
        "small_model": MODEL,
        "permission": {"bash": "allow"},
    }


def strip_jsonc(text: str) -> str:
    """JSON from JSONC: comments and trailing commas out, strings untouched."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]":
                i += 1  # a trailing comma
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def pins_model(text: str) -> bool:
    """Whether a config document (JSON or JSONC) sets a default model."""
    try:
        config = json.loads(strip_jsonc(text))
    except ValueError:
        return False
    model = config.get("model") if isinstance(config, dict) else None
    return isinstance(model, str) and bool(model.strip())


def global_config_dir(env: Mapping[str, str]) -> Path | None:
    """OpenCode's global config dir as the server's environment places it."""
    base = env.get("XDG_CONFIG_HOME")
    if base:
        return Path(base) / "opencode"
    home = env.get("HOME")
    return Path(home) / ".config" / "opencode" if home else None


def config_files(env: Mapping[str, str], directory: str) -> list[Path]:
    """The config files a server with environment `env` may load for `directory` (those
    that exist): global, OPENCODE_CONFIG, the project's up to its repository root,
    OPENCODE_CONFIG_DIR."""
    candidates: list[Path] = []
    found = global_config_dir(env)
    if found is not None:
        candidates += [found / name for name in ("config.json", *_CONFIG_NAMES)]
    if env.get("OPENCODE_CONFIG"):
        candidates.append(Path(env["OPENCODE_CONFIG"]))
    if not env.get("OPENCODE_DISABLE_PROJECT_CONFIG"):
        here = Path(directory)
        for level in (here, *here.parents):
            candidates += [level / name for name in _CONFIG_NAMES]
            candidates += [level / ".opencode" / name for name in _CONFIG_NAMES]
            if (level / ".git").exists():
                break  # OpenCode stops at the repository's root
    if env.get("OPENCODE_CONFIG_DIR"):
        candidates += [Path(env["OPENCODE_CONFIG_DIR"]) / name for name in _CONFIG_NAMES]
    return [path for path in candidates if path.is_file()]


def pinned_by(env: Mapping[str, str], directory: str) -> str | None:
    """The first config layer that sets `model` for a server with environment `env` in
    `directory` (a path, or the variable's name), or None when none ocm can read does."""
    content = env.get(CONFIG_VARIABLE)
    if content and pins_model(content):
        return CONFIG_VARIABLE
    for path in config_files(env, directory):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if pins_model(text):
            return str(path)
    return None
