"""`ocm mcp --http`: the token file and the bearer check without a server, then the real
command serving the SDK's own client over streamable HTTP on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from anyio.abc import Process
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import Receive, Scope, Send

from opencode_manager import Settings, UsageError
from opencode_manager.mcpserver.http import BearerAuth, check_address, load_token, token_path

from helpers import Ocm, assert_one_line_error

SERVING = re.compile(r"ocm mcp: serving (http://127\.0\.0\.1:(\d+)/mcp) \(token in (\S+)\)")
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def _settings() -> Settings:
    return Settings.load(home=Path(os.environ["OCM_HOME"]))


# -- the token file ------------------------------------------------------------------------
def test_the_token_is_made_once_private_and_reused() -> None:
    settings = _settings()
    first = load_token(settings)
    assert first.created
    assert first.path == settings.home / "mcp-token" == token_path(settings)
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.home.stat().st_mode) == 0o700
    assert len(first.value) >= 40
    assert first.value not in repr(first)
    again = load_token(settings)
    assert (again.value, again.created) == (first.value, False)
    assert [p.name for p in settings.home.iterdir() if p.name.startswith(".")] == []


def test_rotate_replaces_the_token_and_an_empty_file_gets_a_new_one() -> None:
    settings = _settings()
    first = load_token(settings)
    rotated = load_token(settings, rotate=True)
    assert rotated.created
    assert rotated.value != first.value
    assert load_token(settings).value == rotated.value
    first.path.write_text("\n")
    remade = load_token(settings)
    assert remade.created
    assert remade.value
    assert stat.S_IMODE(remade.path.stat().st_mode) == 0o600


def test_a_token_file_others_can_read_is_made_private() -> None:
    settings = _settings()
    token = load_token(settings)
    os.chmod(token.path, 0o644)
    assert load_token(settings).value == token.value
    assert stat.S_IMODE(token.path.stat().st_mode) == 0o600


def test_only_loopback_addresses_and_real_ports() -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        check_address(host, 0)
    for host in ("0.0.0.0", "192.168.1.2", "example.com", "127.0.0.2"):
        with pytest.raises(UsageError, match="loopback only"):
            check_address(host, 8765)
    for port in (-1, 65536):
        with pytest.raises(UsageError, match="invalid --port"):
            check_address("127.0.0.1", port)


# -- the bearer check ----------------------------------------------------------------------
async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"inside"})


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("authorization", "status", "error"),
    [
        (None, 401, "unauthorized"),
        ("Bearer wrong-token", 401, "invalid_token"),
        ("Bearer ", 401, "unauthorized"),
        ("Basic c2VjcmV0LXRva2Vu", 401, "unauthorized"),
        ("Bearer secret-token-x", 401, "invalid_token"),
        ("Bearer secret-token", 200, None),
        ("bearer secret-token", 200, None),
    ],
)
async def test_the_bearer_check(authorization: str | None, status: int, error: str | None) -> None:
    app = BearerAuth(_ok, "secret-token")
    headers = {"Authorization": authorization} if authorization is not None else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.post("/mcp", headers=headers, content=b"{}")
    assert response.status_code == status
    if error is None:
        assert response.text == "inside"
        return
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == error
    assert "secret-token" not in response.text


# -- the real command ----------------------------------------------------------------------
@dataclass
class Served:
    process: Process
    url: str
    token_path: Path
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def text(self) -> str:
        return self.stderr.decode(errors="replace")

    async def _read(self) -> bool:
        assert self.process.stderr is not None
        try:
            self.stderr += await self.process.stderr.receive()
        except anyio.EndOfStream:
            return False
        return True

    async def stop(self) -> int:
        """SIGTERM, then everything it wrote until it exits."""
        self.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            while await self._read():
                pass
            return await self.process.wait()


@asynccontextmanager
async def _serving(*args: str) -> AsyncIterator[Served]:
    """`ocm mcp --http ...` running, once it has said where it serves."""
    command = [sys.executable, "-m", "opencode_manager", "mcp", "--http", *args]
    async with await anyio.open_process(command) as process:
        served = Served(process, "", Path())
        try:
            with anyio.fail_after(60):
                while not (found := SERVING.search(served.text)):
                    if not await served._read():
                        raise AssertionError(f"ocm mcp --http ended: {served.text}")
            served.url, served.token_path = found.group(1), Path(found.group(3))
            yield served
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.fail_after(30):
                    await process.wait()


async def _tools_over_http(url: str, token: str) -> tuple[set[str], Any, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        names = {tool.name for tool in (await client.list_tools()).tools}
        fleet = await client.call_tool("fleet_status", {})
        listed = await client.call_tool("instances_list", {})
    assert not fleet.is_error, fleet.content
    assert not listed.is_error, listed.content
    return names, fleet.structured_content, listed.structured_content


@pytest.mark.anyio
async def test_ocm_mcp_http_serves_the_sdk_client_behind_the_token() -> None:
    settings = _settings()
    async with _serving("--port", "0") as served:
        assert served.token_path == token_path(settings)
        token = served.token_path.read_text().strip()
        assert f"new token, shown once: {token}" in served.text  # made now: shown once
        assert stat.S_IMODE(served.token_path.stat().st_mode) == 0o600

        names, fleet, listed = await _tools_over_http(served.url, token)
        assert {"fleet_status", "instances_list", "task_run", "instances_stop"} <= names
        assert fleet["instances"] == [], fleet
        assert fleet["totals"]["instances"] == 0, fleet
        assert listed == {"instances": []}

        async with httpx.AsyncClient(timeout=30) as raw:
            body = json.dumps(INITIALIZE)
            json_headers = {**MCP_HEADERS, "Content-Type": "application/json"}
            anonymous = await raw.post(served.url, content=body, headers=json_headers)
            assert anonymous.status_code == 401
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            assert anonymous.json()["error"] == "unauthorized"
            with_token = {**json_headers, "Authorization": f"Bearer {token}"}
            wrong = {**with_token, "Authorization": "Bearer not-the-token"}
            assert (await raw.post(served.url, content=body, headers=wrong)).status_code == 401
            rebound = {**with_token, "Host": "evil.example"}
            refused = await raw.post(served.url, content=body, headers=rebound)
            assert refused.status_code in (403, 421), refused.text
            foreign = {**with_token, "Origin": "http://evil.example"}
            refused = await raw.post(served.url, content=body, headers=foreign)
            assert refused.status_code == 403, refused.text
        assert await served.stop() == 0, served.text
    assert "Traceback" not in served.text
    assert served.text.count(token) == 1

    # A second run reuses the token and shows only where it is.
    async with _serving("--port", "0", "--read-only") as again:
        assert token not in again.text
        names, _, _ = await _tools_over_http(again.url, token)
        assert "instances_stop" not in names
        assert await again.stop() == 0, again.text
    assert "Traceback" not in again.text
    assert token_path(settings).read_text().strip() == token


def test_a_busy_port_is_one_line_and_makes_no_token(ocm: Ocm) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = ocm("mcp", "--http", "--port", str(port), timeout=120)
    assert_one_line_error(result, 4, f"port {port} is in use")
    assert result.stdout == ""
    assert not token_path(_settings()).exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--http", "--host", "0.0.0.0"], "loopback only"),
        (["--http", "--port", "70000"], "invalid --port 70000"),
        (["--port", "8765"], "go with --http"),
        (["--rotate-token"], "go with --http"),
    ],
)
def test_bad_addresses_are_usage_errors(ocm: Ocm, args: list[str], needle: str) -> None:
    result = ocm("mcp", *args, timeout=120)
    assert_one_line_error(result, 2, needle)
    assert not token_path(_settings()).exists()


def test_the_help_shows_the_http_example(ocm: Ocm) -> None:
    result = ocm("mcp", "--help", check=True, timeout=120)
    examples = result.stdout.split("Examples:\n", 1)[1]
    assert "ocm mcp --http --port 8765" in examples
