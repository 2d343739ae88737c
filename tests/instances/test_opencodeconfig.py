"""Which model OpenCode's config layers name as the default, read as the server reads them."""

from __future__ import annotations

import json
from pathlib import Path

from opencode_manager.instances.opencodeconfig import default_model


def _write(path: Path, model: str | None, *, jsonc: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"model": model} if model else {"theme": "x"})
    path.write_text("// a comment\n" + body[:-1] + ",}\n" if jsonc else body)


def test_the_inline_config_wins_over_every_file(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    (project / ".git").mkdir(parents=True)
    _write(project / "opencode.json", "anthropic/claude")
    env = {"HOME": str(tmp_path / "home"),
           "OPENCODE_CONFIG_CONTENT": json.dumps({"model": "openai/gpt"})}  # fmt: skip
    assert default_model(env, str(project)) == "openai/gpt"


def test_the_nearest_project_file_wins_over_the_global_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _write(home / ".config" / "opencode" / "opencode.json", "global/model")
    project = tmp_path / "repo"
    (project / ".git").mkdir(parents=True)
    _write(project / "opencode.json", "root/model")
    sub = project / "pkg"
    _write(sub / "opencode.jsonc", "sub/model", jsonc=True)
    env = {"HOME": str(home)}
    assert default_model(env, str(sub)) == "sub/model"
    assert default_model(env, str(project)) == "root/model"
    assert default_model(env, str(tmp_path)) == "global/model"  # no project config here


def test_layers_that_name_no_model_are_passed_over_and_none_means_unknown(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    _write(home / ".config" / "opencode" / "opencode.json", None)
    project = tmp_path / "repo"
    (project / ".git").mkdir(parents=True)
    _write(project / "opencode.json", None)
    env = {"HOME": str(home), "OPENCODE_CONFIG_CONTENT": "{}"}
    assert default_model(env, str(project)) is None
    _write(home / ".config" / "opencode" / "opencode.json", "global/model")
    assert default_model(env, str(project)) == "global/model"
