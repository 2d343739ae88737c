"""Unit tests: known secrets never reach stored records, logs or output; the rules by length
(module docstring of opencode_manager.redaction)."""

from __future__ import annotations

import json
import secrets as random
import sqlite3
import uuid
from pathlib import Path

import anyio
import pytest
from mcp import Client
from starlette.testclient import TestClient

from opencode_manager.dashboard.app import Dashboard
from opencode_manager.instances import credentials
from opencode_manager.instances.fleet import Fleet as RegistryFleet
from opencode_manager.mcpserver.tools import build_server
from opencode_manager.models import InstanceSpec
from opencode_manager.redaction import (
    REDACTED,
    StreamRedactor,
    may_hold,
    redact,
    redact_data,
    redact_output,
)
from opencode_manager.secretfile import load_secret
from opencode_manager.settings import Settings

from conftest import Fleet
from helpers import invoke_ocm


def test_every_occurrence_is_replaced_and_short_strings_are_left_alone() -> None:
    secret = "s3cr3t-passw0rd-xyz"
    text = f"OPENCODE_SERVER_PASSWORD={secret}\nagain: {secret}"
    assert redact(text, [secret]) == f"OPENCODE_SERVER_PASSWORD={REDACTED}\nagain: {REDACTED}"
    assert redact("the cat sat", ["cat"]) == "the cat sat"  # too short to be a secret
    assert redact("the 1234567 sat", ["1234567"]) == "the 1234567 sat"  # 7: still too short


def test_long_secrets_go_wherever_they_are_medium_ones_only_when_they_stand_alone() -> None:
    token = random.token_urlsafe(24)  # what ocm makes: 32 characters
    assert redact(f"x{token}y", [token]) == f"x{REDACTED}y"  # glued to other text: still out
    medium = "hunter2hunter"  # 13 characters, chosen by a person for a remote server
    assert redact(f"pw={medium}.", [medium]) == f"pw={REDACTED}."
    assert redact(f"{medium}\n", [medium]) == f"{REDACTED}\n"
    assert redact(f"say {medium}s", [medium]) == f"say {medium}s"  # another word
    assert redact(f"x{medium}", [medium]) == f"x{medium}"
    eight = "abcd1234"  # the shortest that counts
    assert redact(f"'{eight}'", [eight]) == f"'{REDACTED}'"
    assert redact(f"{eight}5", [eight]) == f"{eight}5"


def test_secrets_with_regex_characters_and_overlaps() -> None:
    odd = "a.b*c+d?e(f)[g]|h^$"  # taken literally, never as a pattern
    assert redact(f"pw {odd} end", [odd]) == f"pw {REDACTED} end"
    assert redact("aXbYcZdQeRf", [odd]) == "aXbYcZdQeRf"
    outer = "0123456789abcdefXYZ"
    inner = "0123456789abcdef"
    assert redact(f"{outer} {inner}", [inner, outer]) == f"{REDACTED} {REDACTED}"


def test_structures_are_walked() -> None:
    secret = "another-long-secret"
    data = {"output": [f"x {secret}", 3, None], "title": "env", "nested": {"a": secret}}
    assert redact_data(data, (secret,)) == {
        "output": [f"x {REDACTED}", 3, None],
        "title": "env",
        "nested": {"a": REDACTED},
    }
    assert redact_data(data, ()) is data
    assert redact_data(data, ("short",)) is data  # nothing usable: nothing walked


def test_may_hold_sees_secrets_in_json_text_escaped_or_not() -> None:
    plain = "plain-secret-0123456789"
    quoted = 'quote"and\\slash-0123'
    assert may_hold(json.dumps({"text": f"x {plain}"}), [plain])
    assert may_hold(json.dumps({"text": f"x {quoted}"}), [quoted])
    assert not may_hold(json.dumps({"text": "nothing here"}), [plain, quoted])
    assert not may_hold("short", ["short"])


def test_a_secret_split_across_streamed_pieces_never_shows() -> None:
    token = random.token_urlsafe(32)
    text = f"the token is {token}, and again {token}!"
    for size in (1, 2, 3, 5, 7, 11, 50):
        stream = StreamRedactor()
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        shown = [stream.feed(piece, [token]) for piece in pieces]
        shown.append(stream.flush([token]))
        joined = "".join(shown)
        assert joined == f"the token is {REDACTED}, and again {REDACTED}!", size
        assert not any(token[:6] in piece for piece in shown)  # no piece shows its start
    stream = StreamRedactor()  # text that only looks like a start is let through at the end
    assert stream.feed("ends with " + token[:5], [token]) == "ends with "
    assert stream.flush([token]) == token[:5]
    assert StreamRedactor().feed("no secrets known", []) == "no secrets known"


# -- on a real fleet: an agent prints every secret it can read -----------------------------
@pytest.mark.integration
def test_no_secret_an_agent_prints_is_stored_or_shown(fleet: Fleet, tmp_path: Path) -> None:
    """Issue 23: the record kept other instances' passwords, a remote's password and the
    fronts' tokens; `session messages` and `api` printed even the instance's own password.
    The agent reads them the way any same-user process can: from $OCM_HOME."""
    home = Path(fleet.env["OCM_HOME"])
    settings = Settings.load(home=home)
    # The fronts' tokens, made as `ocm mcp --http` and `ocm dashboard` make them.
    mcp_token = load_secret(settings, "mcp-token", "the MCP token").value
    dashboard_token = load_secret(settings, "dashboard-token", "the dashboard token").value
    # A remote instance, recorded as `ocm remote add` records it (row and password at once).
    remote = f"far-{uuid.uuid4().hex[:6]}"
    remote_password = random.token_urlsafe(20)
    registry = RegistryFleet(settings, backups=False)
    with registry.registry.transaction() as db:
        spec = InstanceSpec(name=remote, dir=str(tmp_path), remote=True)
        registry.registry.add_remote(db, spec, url="http://127.0.0.1:9", version="1.18.33")
        credentials.write_password(settings, remote, remote_password)
    registry.close()
    try:
        passwords = [credentials.read_password(settings, n) for n in ("oc-1", "oc-2", "oc-3")]
        known = [p for p in passwords if p] + [remote_password, mcp_token, dashboard_token]
        assert len(known) == 6

        def clean(text: str, where: str) -> None:
            leaked = [i for i, secret in enumerate(known) if secret in text]
            assert not leaked, f"{where} shows secrets {leaked}: {text[:2000]}"

        files = f"{home / 'secrets'} {home / 'mcp-token'} {home / 'dashboard-token'}"
        streamed = invoke_ocm("run", "-i", "oc-1", "--auto-approve", "--format", "json",
                              f"BASH: grep -rH . {files}", env=fleet.env)  # fmt: skip
        assert streamed.returncode == 0, str(streamed)
        clean(streamed.stdout + streamed.stderr, "ocm run --format json")
        session_id = json.loads(streamed.stdout.splitlines()[0])["sessionID"]
        with sqlite3.connect(home / "registry.db") as db:
            rows = db.execute(
                "SELECT id, record FROM tasks WHERE json_extract(record, '$.session_id') = ?",
                (session_id,),
            ).fetchall()
        [(task_id, stored)] = rows
        clean(stored, "the stored record")
        assert stored.count(REDACTED) >= 6  # the agent did print them: redacted, not absent
        for args in (
            ("result", task_id, "--json"),
            ("result", task_id),
            ("results", "--json"),
            ("session", "messages", session_id, "--json"),
            ("session", "messages", session_id),
            ("api", "oc-1", "GET", f"/session/{session_id}/message"),
        ):
            shown = invoke_ocm(*args, env=fleet.env)
            assert shown.returncode == 0, str(shown)
            clean(shown.stdout + shown.stderr, f"ocm {' '.join(args[:2])}")
            assert REDACTED in shown.stdout, args

        async def mcp_reads() -> str:
            async with Client(build_server(settings)) as client:
                record = await client.call_tool("task_get", {"task_id": task_id})
                session = await client.call_tool("session_get", {"session_id": session_id})
            return json.dumps([record.structured_content, session.structured_content])

        clean(anyio.run(mcp_reads), "MCP task_get / session_get")
        app = Dashboard(settings, dashboard_token).app(["127.0.0.1"])
        with TestClient(app, base_url="http://127.0.0.1:8766") as browser:
            assert browser.get("/login", params={"token": dashboard_token}).status_code == 200
            page = browser.get(f"/tasks/{task_id}")
            assert page.status_code == 200, page.text
            clean(page.text, "the dashboard's task page")
            assert REDACTED in page.text
            clean(browser.get("/tasks").text, "the dashboard's task list")
    finally:
        invoke_ocm("remote", "rm", remote, env=fleet.env)


def test_the_password_a_2x_server_prints_is_redacted() -> None:
    assert redact_output("server password s2eUEr5xQ9") == "server password " + REDACTED
    assert redact_output("  server password x\n") == "  server password " + REDACTED + "\n"
    assert redact_output("server listening on http://127.0.0.1:1") == (
        "server listening on http://127.0.0.1:1"
    )
    # A log line that merely mentions a password is left alone; known secrets still go.
    said = 'level=INFO message="server password set" other=sekrit-value'
    assert redact_output(said, ("sekrit-value",)) == (
        'level=INFO message="server password set" other=' + REDACTED
    )
