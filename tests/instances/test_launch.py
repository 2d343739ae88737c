"""Unit tests: how a server is launched (argv, environment, output parsing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opencode_manager.errors import UsageError
from opencode_manager.instances.launch import (
    explain_exit,
    parse_listening,
    port_of,
    prepare_dirs,
    server_argv,
    server_env,
)
from opencode_manager.lines import Line
from opencode_manager.models import InstanceSpec


def test_argv_never_carries_the_password() -> None:
    spec = InstanceSpec(name="a", dir="/p", cors=("https://x.test",), log_level="WARN")
    argv = server_argv("/bin/opencode", spec, 4300)
    assert argv == [
        "/bin/opencode",
        "serve",
        "--hostname",
        "127.0.0.1",
        "--port",
        "4300",
        "--cors",
        "https://x.test",
        "--log-level",
        "WARN",
    ]
    assert server_argv("/bin/opencode", spec, None)[5] == "0"


def test_env_isolates_and_scrubs(tmp_path: Path) -> None:
    base = {
        "PATH": "/bin",
        "OPENCODE_SERVER_PASSWORD": "leak",
        "OCM_HOME": "/x",
        "ANTHROPIC_API_KEY": "k",
    }
    spec = InstanceSpec(name="a", dir="/p", env=(("FOO", "bar"),))
    env = server_env(base, spec, password="pw", instance_dir=tmp_path)
    assert env["OPENCODE_SERVER_PASSWORD"] == "pw"
    assert env["OPENCODE_SERVER_USERNAME"] == "opencode"
    assert env["XDG_DATA_HOME"] == str(tmp_path / "data")
    assert env["FOO"] == "bar"
    assert env["ANTHROPIC_API_KEY"] == "k"
    assert "OCM_HOME" not in env
    no_auth = server_env(
        base, InstanceSpec(name="a", dir="/p", auth=False), password=None, instance_dir=tmp_path
    )
    assert "OPENCODE_SERVER_PASSWORD" not in no_auth  # the inherited one is scrubbed too
    shared = server_env(
        {}, InstanceSpec(name="a", dir="/p", shared_data=True), password=None, instance_dir=tmp_path
    )
    assert "XDG_DATA_HOME" not in shared


def test_prepare_dirs_links_credentials(tmp_path: Path) -> None:
    user_data = tmp_path / "user"
    (user_data / "opencode").mkdir(parents=True)
    (user_data / "opencode" / "auth.json").write_text('{"anthropic": {}}')
    instance = tmp_path / "inst"
    prepare_dirs(instance, user_data, InstanceSpec(name="a", dir="/p"))
    link = instance / "data" / "opencode" / "auth.json"
    assert link.is_symlink()
    assert link.read_text() == '{"anthropic": {}}'
    prepare_dirs(instance, user_data, InstanceSpec(name="a", dir="/p"))  # idempotent


def test_parse_listening() -> None:
    assert parse_listening("opencode server listening on http://127.0.0.1:4300\n") == (
        "http://127.0.0.1:4300"
    )
    assert parse_listening("Warning: OPENCODE_SERVER_PASSWORD is not set") is None
    assert port_of("http://127.0.0.1:4300") == 4300
    assert port_of("http://[::1]:81/x") == 81


def test_explain_exit() -> None:
    spec = InstanceSpec(name="a", dir="/p", port=4300)
    assert explain_exit(["Error: Unexpected error", "", "ServeError"], spec, 4300) == (
        "port 4300 is already in use"
    )
    cause = explain_exit(
        ["Error: Config file at /h/opencode.json is not valid JSON(C):", "--- JSONC Input ---"],
        spec,
        None,
    )
    assert cause.startswith("invalid OpenCode config: Config file at /h/opencode.json")
    assert explain_exit([], spec, None) == "the server exited during start"


def test_explain_exit_reads_through_colour_and_names_a_failed_database_statement() -> None:
    """OpenCode 1.18.33 on a full disk, restarted after a SIGKILL left its WAL unsaved: the
    red `Error:`, then the statement; the last line alone ("params:") said nothing."""
    spec = InstanceSpec(name="a", dir="/p")
    red = "\x1b[91m\x1b[1mError: \x1b[0mUnexpected error"
    assert explain_exit([red, "", "another line"], spec, None) == "Error: Unexpected error"
    lines = [red, "", "Failed query: PRAGMA wal_checkpoint(PASSIVE)", "params: "]
    assert explain_exit(lines, spec, None) == (
        "OpenCode's database failed at start (Failed query: PRAGMA wal_checkpoint(PASSIVE))"
    )


def test_the_scrubbing_plugin_is_added_to_the_users_config() -> None:
    from opencode_manager.instances.launch import SCRUB_PLUGIN, with_plugin

    uri = SCRUB_PLUGIN.resolve().as_uri()
    assert SCRUB_PLUGIN.is_file()  # shipped with the package
    assert json.loads(with_plugin(None, SCRUB_PLUGIN)) == {"plugin": [uri]}
    mine = json.dumps({"model": "p/m", "plugin": ["my-plugin"]})
    assert json.loads(with_plugin(mine, SCRUB_PLUGIN)) == {
        "model": "p/m",
        "plugin": ["my-plugin", uri],
    }
    with pytest.raises(UsageError, match="not JSON"):
        with_plugin("{oops", SCRUB_PLUGIN)


def test_the_server_env_carries_the_plugin_only_with_a_password(tmp_path: Path) -> None:
    spec = InstanceSpec(name="a", dir=str(tmp_path), env=(("OPENCODE_CONFIG_CONTENT", "{}"),))
    env = server_env({"OPENCODE_PURE": "1"}, spec, password="pw-123456789", instance_dir=tmp_path)
    assert "ocm-scrub-credentials.js" in env["OPENCODE_CONFIG_CONTENT"]
    assert "OPENCODE_PURE" not in env  # it would switch the plugin off
    open_env = server_env({}, spec, password=None, instance_dir=tmp_path)
    assert open_env["OPENCODE_CONFIG_CONTENT"] == "{}"


def test_the_listening_line_of_both_lines() -> None:
    assert parse_listening("server listening on http://127.0.0.1:18402") == (  # 2.x
        "http://127.0.0.1:18402"
    )
    assert parse_listening("server password s2eUEr5x") is None


def test_2x_gets_its_log_level_in_lower_case() -> None:
    spec = InstanceSpec(name="a", dir="/p", log_level="WARN")
    assert server_argv("oc", spec, 4300, line=Line.V2)[-2:] == ["--log-level", "warn"]
    assert server_argv("oc", spec, 4300, line=Line.V1)[-2:] == ["--log-level", "WARN"]
    assert server_argv("oc", spec, 4300)[-2:] == ["--log-level", "WARN"]
