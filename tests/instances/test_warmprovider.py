"""Pure: where the warm-up provider may be added without changing the user's default model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opencode_manager.errors import UsageError
from opencode_manager.instances import warmprovider as wp


def test_the_provider_joins_the_users_config_content_and_changes_nothing_else() -> None:
    mine = {"model": "mine/big", "small_model": "mine/small", "provider": {"mine": {"x": 1}}}
    merged = json.loads(wp.with_provider(json.dumps(mine), "http://127.0.0.1:9/v1"))
    assert list(merged["provider"]) == ["mine", wp.PROVIDER_ID]  # after the user's own
    assert merged["provider"]["mine"] == {"x": 1}
    assert (merged["model"], merged["small_model"]) == ("mine/big", "mine/small")
    entry = merged["provider"][wp.PROVIDER_ID]
    assert entry["options"]["baseURL"] == "http://127.0.0.1:9/v1"
    assert list(entry["models"]) == [wp.MODEL_ID]
    assert "model" not in json.loads(wp.with_provider(None, "http://h/v1"))
    with pytest.raises(UsageError):
        wp.with_provider("[1]", "http://h/v1")


def test_the_scratch_config_makes_the_warm_up_model_its_default() -> None:
    config = wp.scratch_config("http://h/v1")
    assert config["model"] == config["small_model"] == wp.MODEL
    assert list(config["provider"]) == [wp.PROVIDER_ID]


def test_jsonc_comments_and_trailing_commas_are_read() -> None:
    text = '{\n // a comment "model": "x"\n "url": "http://a//b", /* more */ "model": "m/1",\n}'
    assert json.loads(wp.strip_jsonc(text)) == {"url": "http://a//b", "model": "m/1"}
    assert wp.pins_model(text)
    assert not wp.pins_model('{"model": ""}')
    assert not wp.pins_model("not json")


def test_pinned_by_reads_the_layers_both_lines_load(tmp_path: Path) -> None:
    home, repo = tmp_path / "home", tmp_path / "repo"
    project = repo / "sub" / "dir"
    project.mkdir(parents=True)
    (repo / ".git").mkdir()
    env = {"HOME": str(home)}
    assert wp.pinned_by(env, str(project)) is None
    # Above the repository's root: OpenCode does not read it, neither does ocm.
    (tmp_path / "opencode.json").write_text('{"model": "a/b"}')
    assert wp.pinned_by(env, str(project)) is None
    (repo / ".opencode").mkdir()
    (repo / ".opencode" / "opencode.jsonc").write_text('{"model": "a/b",}')
    assert wp.pinned_by(env, str(project)) == str(repo / ".opencode" / "opencode.jsonc")
    assert wp.pinned_by({**env, "OPENCODE_DISABLE_PROJECT_CONFIG": "1"}, str(project)) is None
    glob = home / ".config" / "opencode"
    glob.mkdir(parents=True)
    (glob / "opencode.json").write_text('{"model": "g/m"}')
    assert wp.pinned_by(env, str(project)) == str(glob / "opencode.json")
    content = {**env, wp.CONFIG_VARIABLE: '{"model": "c/m"}'}
    assert wp.pinned_by(content, str(project)) == wp.CONFIG_VARIABLE
