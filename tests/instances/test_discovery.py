"""Unit tests: recognising foreign servers of both lines and the user's OpenCode 2 background
service (no processes: command lines and registration files)."""

from __future__ import annotations

import json
from pathlib import Path

from opencode_manager.instances.discovery import (
    ForeignServer,
    is_service,
    looks_like_server,
    read_services,
)


def test_2x_command_lines_are_servers_and_the_service_is_told_apart() -> None:
    bare = ["/p/node_modules/.bin/opencode", "serve", "--hostname", "127.0.0.1", "--port", "1"]
    service = ["/p/node_modules/@opencode/cli/bin/opencode.exe", "serve", "--service"]
    assert looks_like_server(bare)
    assert not is_service(bare)
    assert looks_like_server(service)
    assert is_service(service)
    assert looks_like_server(["/x/opencode2", "serve"])
    assert not looks_like_server(["/x/opencode.exe", "service", "start"])
    assert not is_service(["/x/opencode.exe", "service", "start", "--service"])


def test_service_registrations_are_read_without_their_password(tmp_path: Path) -> None:
    state = tmp_path / "opencode"
    state.mkdir()
    (state / "service.json").write_text(
        json.dumps(
            {
                "id": "8d2a",
                "version": "2.1.2",
                "url": "http://127.0.0.1:49374",
                "pid": 19850,
                "password": "s3cret-s3cret",
            }
        )
    )
    (state / "service-local.json").write_text(json.dumps({"pid": 7, "url": 5}))
    (state / "service-broken.json").write_text("{not json")
    (state / "settings.json").write_text(json.dumps({"pid": 1}))
    found = read_services(tmp_path)
    assert sorted((s.pid, s.url, s.version) for s in found) == [
        (7, None, None),
        (19850, "http://127.0.0.1:49374", "2.1.2"),
    ]
    assert "s3cret" not in repr(found)
    assert read_services(tmp_path / "nowhere") == []


def test_a_foreign_servers_url() -> None:
    server = ForeignServer(pid=1, create_time=0.0, port=49374, hostname="0.0.0.0", cmdline=())
    assert server.url == "http://127.0.0.1:49374"
    assert not server.service
