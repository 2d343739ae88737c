"""What OpenCode's own config says, read the way the server reads it (pure but for files).

OpenCode merges its config from layers: the global config dir, `OPENCODE_CONFIG`, the
project's `opencode.json[c]` and `.opencode/` up to the repository root, `OPENCODE_CONFIG_DIR`,
and `OPENCODE_CONFIG_CONTENT` over all of them. ocm reads them for two things: whether a layer
sets a default `model` (the keeper's warm-up may add its provider only then:
instances/warmprovider.py), and which model a task that names none runs on (its provider's
slots: tasks/control.py). A layer ocm does not read (a remote or an organisation's config, the
TOML form) makes these answers "unknown", never wrong in a way that costs the user.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

CONFIG_VARIABLE = "OPENCODE_CONFIG_CONTENT"
_CONFIG_NAMES = ("opencode.jsonc", "opencode.json")


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


def model_in(text: str) -> str | None:
    """The default model a config document (JSON or JSONC) sets, if it sets one."""
    try:
        config = json.loads(strip_jsonc(text))
    except ValueError:
        return None
    model = config.get("model") if isinstance(config, dict) else None
    return model.strip() if isinstance(model, str) and model.strip() else None


def pins_model(text: str) -> bool:
    """Whether a config document (JSON or JSONC) sets a default model."""
    return model_in(text) is not None


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


def default_model(env: Mapping[str, str], directory: str) -> str | None:
    """The model a server with environment `env` runs a task in `directory` on when the task
    names none: the layer of highest precedence that sets one (OPENCODE_CONFIG_CONTENT, then
    OPENCODE_CONFIG_DIR, the project's from the directory up, OPENCODE_CONFIG, the global
    dir), or None when no layer ocm reads does (OpenCode then picks one itself)."""
    content = env.get(CONFIG_VARIABLE)
    if content and (model := model_in(content)):
        return model
    for path in reversed(_by_precedence(config_files(env, directory), env)):
        try:
            model = model_in(path.read_text(errors="replace"))
        except OSError:
            continue
        if model:
            return model
    return None


def _by_precedence(files: list[Path], env: Mapping[str, str]) -> list[Path]:
    """`config_files` lowest precedence first: global, OPENCODE_CONFIG, the project's from
    its repository root down to the directory, OPENCODE_CONFIG_DIR."""
    found = global_config_dir(env)
    custom = Path(env["OPENCODE_CONFIG"]) if env.get("OPENCODE_CONFIG") else None
    extra = Path(env["OPENCODE_CONFIG_DIR"]) if env.get("OPENCODE_CONFIG_DIR") else None
    first = [f for f in files if found is not None and f.parent == found]
    second = [f for f in files if f == custom and f not in first]
    last = [f for f in files if extra is not None and f.parent == extra and f not in first + second]
    project = [f for f in files if f not in first + second + last]
    return [*first, *second, *reversed(project), *last]
